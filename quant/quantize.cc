// Round-to-nearest quantizers and scalar reference decoders. The rules
// (docs/formats.md, "Quantization rules"):
// - Scales are computed from the FINITE weights only; NaN encodes as 0 and
//   ±Inf saturates to the most positive/negative code of its group.
// - f16 scales are the smallest f16 >= the exact scale, clamped to
//   [2^-24, 65504], and codes are computed with that stored scale: the decode
//   error of a finite, non-saturated weight is at most half a step.
// - Rounding is to nearest, ties to even (GPTQ's torch.round does the same).
#include "quant/quantize.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "base/error.h"
#include "quant/half.h"
#include "quant/sfp8.h"

namespace qlm {
namespace {

// Adding and subtracting 1.5·2^23 rounds |x| <= 2^22 to an integer, ties to
// even (the default FP rounding mode; needs IEEE semantics, i.e. no
// -ffast-math), and vectorizes without SSE4.1.
inline float RoundHalfEven(float x) {
  constexpr float kMagic = 12582912.0f;
  return (x + kMagic) - kMagic;
}

// |x| for finite x, 0 for NaN and ±Inf: what the scale computations see.
inline float FiniteAbs(float x) {
  const float a = std::fabs(x);
  return a <= FLT_MAX ? a : 0.0f;
}
inline float FiniteOrZero(float x) { return std::fabs(x) <= FLT_MAX ? x : 0.0f; }
inline float NanToZero(float x) { return x == x ? x : 0.0f; }

// Eight independent lanes: a single running max over floats does not
// vectorize (NaN semantics), eight of them do.
constexpr int kLanes = 8;

// max |x[i]| over the finite x[i] (0 if none).
float MaxFiniteAbs(const float* x, uint64_t n) {
  float acc[kLanes] = {};
  uint64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int k = 0; k < kLanes; ++k) acc[k] = std::max(acc[k], FiniteAbs(x[i + k]));
  }
  for (; i < n; ++i) acc[0] = std::max(acc[0], FiniteAbs(x[i]));
  return *std::max_element(acc, acc + kLanes);
}

// min(0, finite x[i]) and max(0, finite x[i]); n is a multiple of kLanes.
void MinMaxFinite(const float* x, uint64_t n, float& lo, float& hi) {
  float mn[kLanes] = {}, mx[kLanes] = {};
  for (uint64_t i = 0; i < n; i += kLanes) {
    for (int k = 0; k < kLanes; ++k) {
      const float v = FiniteOrZero(x[i + k]);
      mn[k] = std::min(mn[k], v);
      mx[k] = std::max(mx[k], v);
    }
  }
  lo = *std::min_element(mn, mn + kLanes);
  hi = *std::max_element(mx, mx + kLanes);
}

// The smallest f16 >= req (req >= 0, possibly +Inf), clamped to the positive
// finite f16 range [2^-24, 65504], so every stored scale is positive and
// finite and no finite weight needs a code beyond the format's range.
inline uint16_t ScaleToF16(float req) {
  uint16_t h = F32ToF16(req);
  if (F16ToF32(h) < req) ++h;  // positive f16 bit patterns are ordered
  return std::clamp<uint16_t>(h, 0x0001, 0x7bff);
}

void QuantizeInt8Row(const float* x, uint64_t padded_cols, int8_t* codes, uint16_t* scales) {
  for (uint64_t g = 0; g < padded_cols / kInt8GroupSize; ++g) {
    const float* xg = x + g * kInt8GroupSize;
    const float amax = MaxFiniteAbs(xg, kInt8GroupSize);
    const uint16_t h = ScaleToF16(amax / 127.0f);
    scales[g] = h;
    const float s = F16ToF32(h);
    int8_t* cg = codes + g * kInt8GroupSize;
    for (uint32_t i = 0; i < kInt8GroupSize; ++i) {
      float q = NanToZero(xg[i]) / s;
      q = std::min(std::max(q, -127.0f), 127.0f);
      cg[i] = static_cast<int8_t>(static_cast<int>(RoundHalfEven(q)));
    }
  }
}

// codes[padded_cols] receives one code per input (unpacked).
void QuantizeQ4Row(const float* x, uint64_t padded_cols, uint32_t group_size, bool asymmetric,
                   uint8_t* codes, uint16_t* scales, uint8_t* zeros) {
  const uint64_t groups = (padded_cols + group_size - 1) / group_size;
  for (uint64_t g = 0; g < groups; ++g) {
    const uint64_t begin = g * group_size;
    const uint64_t n = std::min<uint64_t>(group_size, padded_cols - begin);
    const float* xg = x + begin;
    // GPTQ: the range always contains 0.
    float xmin, xmax;
    MinMaxFinite(xg, n, xmin, xmax);
    if (xmin == 0.0f && xmax == 0.0f) {  // GPTQ: an all-zero group uses [-1, 1]
      xmin = -1.0f;
      xmax = 1.0f;
    }
    uint16_t h;
    float zero;
    if (asymmetric) {
      h = ScaleToF16((xmax - xmin) / 15.0f);
      const float s = F16ToF32(h);
      zero = RoundHalfEven(std::min(-xmin / s, 15.0f));
    } else {
      h = ScaleToF16(2.0f * std::max(-xmin, xmax) / 15.0f);
      zero = 8.0f;
    }
    const float s = F16ToF32(h);
    scales[g] = h;
    zeros[g] = static_cast<uint8_t>(zero);
    const float lo = -zero, hi = 15.0f - zero;
    uint8_t* cg = codes + begin;
    for (uint64_t i = 0; i < n; ++i) {
      float q = NanToZero(xg[i]) / s;
      q = std::min(std::max(q, lo), hi);
      cg[i] = static_cast<uint8_t>(static_cast<int>(RoundHalfEven(q) + zero));
    }
  }
}

// Byte j of each 64-input block: input j in the low nibble, j + 32 in the high.
void PackQ4(const uint8_t* codes, uint64_t padded_cols, uint8_t* out) {
  for (uint64_t b = 0; b < padded_cols; b += kQ4BlockSize) {
    for (uint32_t j = 0; j < kQ4BlockSize / 2; ++j) {
      out[b / 2 + j] = static_cast<uint8_t>(codes[b + j] | (codes[b + j + 32] << 4));
    }
  }
}

// Decodes stored columns [j0, j1) of `row` into out[0 .. j1-j0).
void DecodeStoredRange(const QTensor& t, uint64_t row, uint64_t j0, uint64_t j1, float* out) {
  const TensorDesc& d = t.desc;
  const uint8_t* data = t.data + row * d.row_bytes;
  switch (d.format) {
    case Format::kF32:
      std::memcpy(out, data + j0 * 4, (j1 - j0) * 4);
      break;
    case Format::kBF16:
      for (uint64_t j = j0; j < j1; ++j) {
        uint16_t b;
        std::memcpy(&b, data + j * 2, 2);
        out[j - j0] = BF16ToF32(b);
      }
      break;
    case Format::kSFP8:
      for (uint64_t j = j0; j < j1; ++j) out[j - j0] = Sfp8Decode(data[j]) * d.tensor_scale;
      break;
    case Format::kInt8: {
      const uint16_t* scales = t.scales + row * d.groups_per_row;
      for (uint64_t j = j0; j < j1; ++j) {
        const float s = F16ToF32(scales[j / kInt8GroupSize]);
        out[j - j0] = static_cast<float>(static_cast<int8_t>(data[j])) * s;
      }
      break;
    }
    case Format::kQ4: {
      const uint16_t* scales = t.scales + row * d.groups_per_row;
      const uint8_t* zeros = t.zeros + row * d.groups_per_row;
      for (uint64_t j = j0; j < j1; ++j) {
        const uint64_t k = j % kQ4BlockSize;
        const uint8_t byte = data[(j - k) / 2 + k % 32];
        const int q = k < 32 ? (byte & 0x0f) : (byte >> 4);
        const uint64_t g = j / d.group_size;
        out[j - j0] = static_cast<float>(q - zeros[g]) * F16ToF32(scales[g]);
      }
      break;
    }
  }
}

void CheckRow(const QTensor& t, uint64_t row, const float* out) {
  if (t.data == nullptr || out == nullptr) throw Error("DequantizeRow: null tensor or output");
  if (row >= t.desc.rows) {
    throw Error("DequantizeRow: row " + std::to_string(row) + " out of range for a tensor of " +
                std::to_string(t.desc.rows) + " rows");
  }
}

}  // namespace

void ValidatePermutation(const int32_t* perm, uint64_t cols) {
  if (perm == nullptr) throw Error("input permutation is null");
  std::vector<bool> seen(cols, false);
  for (uint64_t j = 0; j < cols; ++j) {
    const int32_t p = perm[j];
    if (p < 0 || static_cast<uint64_t>(p) >= cols) {
      throw Error("input permutation entry " + std::to_string(j) + " = " + std::to_string(p) +
                  " is outside 0.." + std::to_string(cols - 1));
    }
    if (seen[p]) {
      throw Error("input permutation is not a permutation: " + std::to_string(p) +
                  " appears twice (again at entry " + std::to_string(j) + ")");
    }
    seen[p] = true;
  }
}

float Sfp8ScaleForMaxAbs(float max_abs) {
  if (!(max_abs > 0.0f) || !(max_abs <= FLT_MAX)) return 1.0f;
  const float s = max_abs / kSfp8MaxMagnitude;
  return s > 0.0f ? s : 1.0f;
}

float Sfp8TensorScale(const float* w, uint64_t n) { return Sfp8ScaleForMaxAbs(MaxFiniteAbs(w, n)); }

QuantizedTensor AllocateQuantized(Format format, uint64_t rows, uint64_t cols,
                                  const QuantizeOptions& options) {
  const bool has_perm = options.perm != nullptr;
  if (has_perm && format == Format::kQ4) ValidatePermutation(options.perm, cols);
  QuantizedTensor t;
  t.desc =
      MakeTensorDesc(format, rows, cols, format == Format::kQ4 ? options.group_size : 0, has_perm);
  t.blob.Resize(t.desc.total_bytes);
  if (has_perm) std::memcpy(t.blob.data() + t.desc.perm_offset, options.perm, cols * 4);
  return t;
}

void QuantizeRowsInto(const float* w_rows, uint64_t row_begin, uint64_t row_end,
                      const TensorDesc& d, uint8_t* blob, const QuantizeOptions& options) {
  if (row_begin > row_end || row_end > d.rows) {
    throw Error("QuantizeRowsInto: row range [" + std::to_string(row_begin) + ", " +
                std::to_string(row_end) + ") is not inside a tensor of " + std::to_string(d.rows) +
                " rows");
  }
  if (row_begin == row_end) return;
  if (w_rows == nullptr || blob == nullptr) throw Error("QuantizeRowsInto: null input or blob");
  const QTensor view = ViewTensor(d, blob);
  const uint64_t cols = d.cols;
  switch (d.format) {
    case Format::kF32:
      std::memcpy(blob + d.data_offset + row_begin * d.row_bytes, w_rows,
                  (row_end - row_begin) * cols * 4);
      return;
    case Format::kBF16:
      for (uint64_t r = row_begin; r < row_end; ++r) {
        const float* src = w_rows + (r - row_begin) * cols;
        uint16_t* dst = reinterpret_cast<uint16_t*>(blob + d.data_offset + r * d.row_bytes);
        for (uint64_t j = 0; j < cols; ++j) dst[j] = F32ToBF16(src[j]);
      }
      return;
    case Format::kSFP8: {
      const float scale = d.tensor_scale;
      if (!(scale > 0.0f) || !(scale <= FLT_MAX)) {
        throw Error("sfp8 tensor_scale must be positive and finite, got " + std::to_string(scale));
      }
      for (uint64_t r = row_begin; r < row_end; ++r) {
        const float* src = w_rows + (r - row_begin) * cols;
        uint8_t* dst = blob + d.data_offset + r * d.row_bytes;
        Sfp8EncodeScaled(src, cols, scale, dst);
      }
      return;
    }
    case Format::kInt8:
    case Format::kQ4:
      break;
  }
  if (d.has_perm && view.perm == nullptr) throw Error("q4 tensor has_perm but no perm section");
  // One padded (and permuted) copy of the row: padding inputs are 0, which
  // encodes as code 0 (int8) or the group's zero point (q4), i.e. exactly 0.
  std::vector<float> row(d.padded_cols, 0.0f);
  std::vector<uint8_t> codes(d.format == Format::kQ4 ? d.padded_cols : 0);
  uint16_t* all_scales = reinterpret_cast<uint16_t*>(blob + d.scales_offset);
  for (uint64_t r = row_begin; r < row_end; ++r) {
    const float* src = w_rows + (r - row_begin) * cols;
    if (d.has_perm) {
      for (uint64_t j = 0; j < cols; ++j) row[j] = src[view.perm[j]];
    } else {
      std::memcpy(row.data(), src, cols * 4);
    }
    uint8_t* dst = blob + d.data_offset + r * d.row_bytes;
    uint16_t* scales = all_scales + r * d.groups_per_row;
    if (d.format == Format::kInt8) {
      QuantizeInt8Row(row.data(), d.padded_cols, reinterpret_cast<int8_t*>(dst), scales);
    } else {
      uint8_t* zeros = blob + d.zeros_offset + r * d.groups_per_row;
      QuantizeQ4Row(row.data(), d.padded_cols, d.group_size, options.asymmetric, codes.data(),
                    scales, zeros);
      PackQ4(codes.data(), d.padded_cols, dst);
    }
  }
}

void QuantizeRowsInto(const float* w_rows, uint64_t row_begin, uint64_t row_end, QuantizedTensor& t,
                      const QuantizeOptions& options) {
  if (t.blob.size() < t.desc.total_bytes) {
    throw Error("QuantizeRowsInto: blob of " + std::to_string(t.blob.size()) +
                " bytes is smaller than the tensor's " + std::to_string(t.desc.total_bytes));
  }
  QuantizeRowsInto(w_rows, row_begin, row_end, t.desc, t.blob.data(), options);
}

QuantizedTensor Quantize(Format format, const float* w, uint64_t rows, uint64_t cols,
                         const QuantizeOptions& options) {
  QuantizedTensor t = AllocateQuantized(format, rows, cols, options);
  if (format == Format::kSFP8) t.desc.tensor_scale = Sfp8TensorScale(w, rows * cols);
  QuantizeRowsInto(w, 0, rows, t, options);
  return t;
}

void DequantizeRowStored(const QTensor& t, uint64_t row, float* out) {
  CheckRow(t, row, out);
  DecodeStoredRange(t, row, 0, t.desc.cols, out);
}

void DequantizeRow(const QTensor& t, uint64_t row, float* out) {
  CheckRow(t, row, out);
  if (!t.desc.has_perm) {
    DecodeStoredRange(t, row, 0, t.desc.cols, out);
    return;
  }
  if (t.perm == nullptr) throw Error("DequantizeRow: tensor has_perm but no permutation");
  float tmp[kQ4BlockSize];
  for (uint64_t j0 = 0; j0 < t.desc.cols; j0 += kQ4BlockSize) {
    const uint64_t j1 = std::min<uint64_t>(j0 + kQ4BlockSize, t.desc.cols);
    DecodeStoredRange(t, row, j0, j1, tmp);
    for (uint64_t j = j0; j < j1; ++j) out[t.perm[j]] = tmp[j - j0];
  }
}

}  // namespace qlm
