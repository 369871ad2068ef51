// Scalar reference matmul kernels. Written for clarity, not speed: each
// weight row is decoded once into per-thread scratch (stored order), then
// dotted with every row of x (gathered into stored order once per call) in
// double precision.
#include "kernels/scalar/matmul.h"

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "base/error.h"
#include "quant/half.h"
#include "quant/sfp8.h"

namespace qlm::kernels {
namespace {

std::string Range(size_t n_begin, size_t n_end) {
  return "[" + std::to_string(n_begin) + ", " + std::to_string(n_end) + ")";
}

// Weight value of stored column c of row n (no perm applied).
float WeightAt(const QTensor& w, size_t n, size_t c) {
  const TensorDesc& d = w.desc;
  const uint8_t* row = w.data + n * d.row_bytes;
  switch (d.format) {
    case Format::kF32: {
      float v;
      __builtin_memcpy(&v, row + 4 * c, 4);
      return v;
    }
    case Format::kBF16: {
      uint16_t b;
      __builtin_memcpy(&b, row + 2 * c, 2);
      return BF16ToF32(b);
    }
    case Format::kSFP8:
      return Sfp8Decode(row[c]) * d.tensor_scale;
    case Format::kInt8: {
      const float s = F16ToF32(w.scales[n * d.groups_per_row + c / d.group_size]);
      return s * static_cast<float>(static_cast<int8_t>(row[c]));
    }
    case Format::kQ4: {
      const size_t g = n * d.groups_per_row + c / d.group_size;
      const uint8_t byte = row[(c / kQ4BlockSize) * (kQ4BlockSize / 2) + c % (kQ4BlockSize / 2)];
      const int q = (c % kQ4BlockSize) < kQ4BlockSize / 2 ? (byte & 0x0F) : (byte >> 4);
      return F16ToF32(w.scales[g]) * static_cast<float>(q - w.zeros[g]);
    }
  }
  return 0.0f;
}

// 4-bit code of stored column c of row n.
int Q4CodeAt(const QTensor& w, size_t n, size_t c) {
  const uint8_t* row = w.data + n * w.desc.row_bytes;
  const uint8_t byte = row[(c / kQ4BlockSize) * (kQ4BlockSize / 2) + c % (kQ4BlockSize / 2)];
  return (c % kQ4BlockSize) < kQ4BlockSize / 2 ? (byte & 0x0F) : (byte >> 4);
}

// x rows in stored input order: x itself, or gathered through w.perm.
const float* StoredOrderX(const QTensor& w, const float* x, size_t m, std::vector<float>& buf) {
  if (w.perm == nullptr) return x;
  const size_t k = w.desc.cols;
  buf.resize(m * k);
  for (size_t i = 0; i < m; ++i) {
    for (size_t j = 0; j < k; ++j) buf[i * k + j] = x[i * k + static_cast<size_t>(w.perm[j])];
  }
  return buf.data();
}

template <Format F>
void MatmulRef(const QTensor& w, const float* x, size_t m, float* y, size_t n_begin, size_t n_end) {
  CheckMatmulArgs(w, F, n_begin, n_end);
  thread_local std::vector<float> x_buf, w_row;
  const size_t k = w.desc.cols, n_total = w.desc.rows;
  const float* xs = StoredOrderX(w, x, m, x_buf);
  if constexpr (F == Format::kSFP8) {  // sfp8 multiplies bf16(x) (see MatmulFn)
    thread_local std::vector<float> x_bf16;
    x_bf16.assign(xs, xs + m * k);
    for (float& v : x_bf16) v = RoundToBF16(v);
    xs = x_bf16.data();
  }
  w_row.resize(k);
  for (size_t n = n_begin; n < n_end; ++n) {
    for (size_t c = 0; c < k; ++c) w_row[c] = WeightAt(w, n, c);
    for (size_t i = 0; i < m; ++i) {
      double acc = 0.0;
      for (size_t c = 0; c < k; ++c) acc += static_cast<double>(w_row[c]) * xs[i * k + c];
      y[i * n_total + n] = static_cast<float>(acc);
    }
  }
}

void QuantizeActsRef(const float* x, size_t m, size_t k, const int32_t* perm, size_t block,
                     int8_t* q, float* scales, int32_t* sums) {
  CheckQ8ActBlock(block);
  const size_t kp = (k + 63) / 64 * 64, blocks = kp / block;
  for (size_t i = 0; i < m; ++i) {
    const float* xi = x + i * k;
    for (size_t b = 0; b < blocks; ++b) {
      float v[kQ8ActBlockWide];
      float amax = 0.0f;
      for (size_t j = 0; j < block; ++j) {
        const size_t c = b * block + j;
        v[j] = c < k ? xi[perm ? static_cast<size_t>(perm[c]) : c] : 0.0f;
        amax = std::fmax(amax, std::fabs(v[j]));
      }
      const float scale = Q8Scale(amax), inv = Q8InvScale(scale);
      int32_t sum = 0;
      for (size_t j = 0; j < block; ++j) {
        float r = std::nearbyint(v[j] * inv);
        r = std::fmin(127.0f, std::fmax(-127.0f, r));
        q[i * kp + b * block + j] = static_cast<int8_t>(r);
        sum += static_cast<int32_t>(r);
      }
      scales[i * blocks + b] = scale;
      sums[i * blocks + b] = sum;
    }
  }
}

// int8 weights: groups of 32 line up with the activation blocks.
void MatmulQ8Int8Ref(const QTensor& w, const Q8Acts& x, float* y, size_t n_begin, size_t n_end) {
  CheckMatmulQ8Args(w, Format::kInt8, x, n_begin, n_end);
  const TensorDesc& d = w.desc;
  const size_t xblocks = x.k_padded / x.block;
  for (size_t n = n_begin; n < n_end; ++n) {
    const int8_t* wr = reinterpret_cast<const int8_t*>(w.data + n * d.row_bytes);
    for (size_t i = 0; i < x.m; ++i) {
      const int8_t* xq = x.q + i * x.k_padded;
      double acc = 0.0;
      for (size_t b = 0; b < d.groups_per_row; ++b) {
        int32_t dot = 0;
        for (size_t j = 0; j < kQ8ActBlock; ++j) {
          dot += int32_t{wr[b * kQ8ActBlock + j]} * xq[b * kQ8ActBlock + j];
        }
        acc += static_cast<double>(F16ToF32(w.scales[n * d.groups_per_row + b])) *
               x.scales[i * xblocks + b] * dot;
      }
      y[i * d.rows + n] = static_cast<float>(acc);
    }
  }
}

// q4 weights: Σ s_w·(q − z)·s_x·qx = s_w · Σ_blocks s_x·(Σ q·qx − z·Σ qx).
void MatmulQ8Q4Ref(const QTensor& w, const Q8Acts& x, float* y, size_t n_begin, size_t n_end) {
  CheckMatmulQ8Args(w, Format::kQ4, x, n_begin, n_end);
  const TensorDesc& d = w.desc;
  const size_t xblocks = x.k_padded / x.block;
  const size_t blocks_per_group = d.group_size / x.block;
  for (size_t n = n_begin; n < n_end; ++n) {
    for (size_t i = 0; i < x.m; ++i) {
      const int8_t* xq = x.q + i * x.k_padded;
      double acc = 0.0;
      for (size_t g = 0; g < d.groups_per_row; ++g) {
        const int z = w.zeros[n * d.groups_per_row + g];
        double group_acc = 0.0;
        for (size_t bb = 0; bb < blocks_per_group; ++bb) {
          const size_t b = g * blocks_per_group + bb;
          if (b * x.block >= d.padded_cols) break;  // a last group may be partial
          int32_t dot = 0;
          for (size_t j = 0; j < x.block; ++j) {
            const size_t c = b * x.block + j;
            dot += Q4CodeAt(w, n, c) * xq[c];
          }
          group_acc +=
              static_cast<double>(x.scales[i * xblocks + b]) * (dot - z * x.sums[i * xblocks + b]);
        }
        acc += static_cast<double>(F16ToF32(w.scales[n * d.groups_per_row + g])) * group_acc;
      }
      y[i * d.rows + n] = static_cast<float>(acc);
    }
  }
}

}  // namespace

void CheckMatmulArgs(const QTensor& w, Format expected, size_t n_begin, size_t n_end) {
  const TensorDesc& d = w.desc;
  if (d.format != expected) {
    throw Error(std::string("matmul kernel for ") + FormatName(expected) + " called with a " +
                FormatName(d.format) + " tensor");
  }
  if (n_begin > n_end || n_end > d.rows) {
    throw Error("matmul output range " + Range(n_begin, n_end) + " is outside the tensor's " +
                std::to_string(d.rows) + " rows");
  }
  if (w.data == nullptr ||
      ((d.format == Format::kInt8 || d.format == Format::kQ4) && w.scales == nullptr) ||
      (d.format == Format::kQ4 && w.zeros == nullptr) || (d.has_perm && w.perm == nullptr)) {
    throw Error(std::string("matmul: ") + FormatName(d.format) +
                " tensor view is missing a section (data/scales/zeros/perm)");
  }
}

void CheckMatmulQ8Args(const QTensor& w, Format expected, const Q8Acts& x, size_t n_begin,
                       size_t n_end) {
  CheckMatmulArgs(w, expected, n_begin, n_end);
  const size_t kp = (w.desc.cols + 63) / 64 * 64;
  if (x.k != w.desc.cols || x.k_padded != kp) {
    throw Error("int8-activation matmul: activations have k = " + std::to_string(x.k) +
                " (padded " + std::to_string(x.k_padded) + ") but the weight has " +
                std::to_string(w.desc.cols) + " inputs (padded " + std::to_string(kp) + ")");
  }
  if (x.m != 0 && (x.q == nullptr || x.scales == nullptr || x.sums == nullptr)) {
    throw Error("int8-activation matmul: Q8Acts buffers are null");
  }
  CheckQ8ActBlock(x.block);
  // Each weight group must cover whole activation blocks: int8 groups are
  // 32 inputs, q4 groups 32, 64 or 128.
  if (w.desc.group_size % x.block != 0) {
    throw Error("int8-activation matmul: activation blocks of " + std::to_string(x.block) +
                " inputs do not tile the " + FormatName(expected) + " weight's groups of " +
                std::to_string(w.desc.group_size));
  }
}

void CheckQ8ActBlock(size_t block) {
  if (block != kQ8ActBlock && block != kQ8ActBlockWide) {
    throw Error("int8 activations: block of " + std::to_string(block) + " inputs (must be " +
                std::to_string(kQ8ActBlock) + " or " + std::to_string(kQ8ActBlockWide) + ")");
  }
}

void FillScalarMatmul(KernelTable& t) {
  t.matmul[static_cast<int>(Format::kF32)] = MatmulRef<Format::kF32>;
  t.matmul[static_cast<int>(Format::kBF16)] = MatmulRef<Format::kBF16>;
  t.matmul[static_cast<int>(Format::kInt8)] = MatmulRef<Format::kInt8>;
  t.matmul[static_cast<int>(Format::kQ4)] = MatmulRef<Format::kQ4>;
  t.matmul[static_cast<int>(Format::kSFP8)] = MatmulRef<Format::kSFP8>;
  t.quantize_acts = QuantizeActsRef;
  t.matmul_q8[static_cast<int>(Format::kInt8)] = MatmulQ8Int8Ref;
  t.matmul_q8[static_cast<int>(Format::kQ4)] = MatmulQ8Q4Ref;
}

}  // namespace qlm::kernels
