#include "quant/quantize.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "base/error.h"
#include "quant/half.h"
#include "quant/sfp8.h"

namespace qlm {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

std::vector<float> Gaussian(uint64_t n, uint32_t seed, float sigma = 0.02f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, sigma);
  std::vector<float> w(n);
  for (float& x : w) x = d(rng);
  return w;
}

std::vector<int32_t> RandomPerm(uint64_t n, uint32_t seed) {
  std::vector<int32_t> p(n);
  std::iota(p.begin(), p.end(), 0);
  std::mt19937 rng(seed);
  std::shuffle(p.begin(), p.end(), rng);
  return p;
}

std::vector<float> Dequantize(const QuantizedTensor& t) {
  std::vector<float> out(t.desc.rows * t.desc.cols);
  for (uint64_t r = 0; r < t.desc.rows; ++r) {
    DequantizeRow(t.view(), r, out.data() + r * t.desc.cols);
  }
  return out;
}

double RelativeRmse(const std::vector<float>& w, const std::vector<float>& d) {
  double err = 0, ref = 0;
  for (size_t i = 0; i < w.size(); ++i) {
    err += (static_cast<double>(d[i]) - w[i]) * (static_cast<double>(d[i]) - w[i]);
    ref += static_cast<double>(w[i]) * w[i];
  }
  return std::sqrt(err / ref);
}

// The per-weight bound of the grouped formats: for a finite weight,
// |w - ŵ| <= s/2 (s = the group's stored scale), up to float division error.
// Returns the number of weights checked.
uint64_t CheckGroupedBound(const QuantizedTensor& t, const std::vector<float>& w,
                           const int32_t* perm) {
  const TensorDesc& d = t.desc;
  const QTensor v = t.view();
  std::vector<float> stored(d.cols);
  uint64_t checked = 0;
  for (uint64_t r = 0; r < d.rows; ++r) {
    DequantizeRowStored(v, r, stored.data());
    for (uint64_t j = 0; j < d.cols; ++j) {
      const float orig = w[r * d.cols + (perm ? perm[j] : j)];
      const float s = F16ToF32(v.scales[r * d.groups_per_row + j / d.group_size]);
      EXPECT_GT(s, 0.0f);
      EXPECT_LE(std::fabs(stored[j] - orig), 0.5f * s * (1 + 1e-5f))
          << FormatName(d.format) << " row " << r << " stored col " << j << " w=" << orig;
      ++checked;
    }
  }
  return checked;
}

// Codes of stored column j of row r (q4), read straight from the blob.
int Q4Code(const QTensor& v, uint64_t r, uint64_t j) {
  const uint8_t byte = v.data[r * v.desc.row_bytes + (j / 64) * 32 + (j % 32)];
  return (j % 64) < 32 ? (byte & 15) : (byte >> 4);
}

// ---------------------------------------------------------------- f32 / bf16

TEST(Quantize, F32IsExactCopyIncludingNonFinite) {
  std::vector<float> w = Gaussian(3 * 7, 1);
  w[3] = kInf;
  w[4] = -kInf;
  w[5] = 1e-40f;
  const QuantizedTensor t = Quantize(Format::kF32, w.data(), 3, 7);
  EXPECT_EQ(t.desc.row_bytes, 28u);
  const std::vector<float> d = Dequantize(t);
  EXPECT_EQ(0, std::memcmp(d.data(), w.data(), w.size() * 4));
}

TEST(Quantize, Bf16IsRoundToNearestEvenAndKeepsNaN) {
  std::vector<float> w = Gaussian(5 * 9, 2, 3.0f);
  w[0] = kNaN;
  w[1] = kInf;
  w[2] = 1.0f + 0x1p-8f;  // tie -> 1.0
  const QuantizedTensor t = Quantize(Format::kBF16, w.data(), 5, 9);
  const std::vector<float> d = Dequantize(t);
  EXPECT_TRUE(std::isnan(d[0]));
  EXPECT_EQ(d[1], kInf);
  EXPECT_EQ(d[2], 1.0f);
  for (size_t i = 3; i < w.size(); ++i) {
    EXPECT_EQ(d[i], BF16ToF32(F32ToBF16(w[i])));
    EXPECT_LE(std::fabs(d[i] - w[i]), std::fabs(w[i]) * 0x1p-8f);
  }
}

// ---------------------------------------------------------------- int8

TEST(QuantizeInt8, RandomOddSizesMeetPerWeightBoundAndTightScales) {
  for (const auto& [rows, cols] :
       {std::pair<uint64_t, uint64_t>{1, 1}, {3, 31}, {2, 33}, {5, 64}, {7, 100}, {4, 257}}) {
    const std::vector<float> w = Gaussian(rows * cols, static_cast<uint32_t>(rows * 1000 + cols));
    const QuantizedTensor t = Quantize(Format::kInt8, w.data(), rows, cols);
    EXPECT_EQ(t.desc.padded_cols % 32, 0u);
    EXPECT_EQ(CheckGroupedBound(t, w, nullptr), rows * cols);
    // The stored scale is the smallest f16 >= max|w|/127.
    const QTensor v = t.view();
    for (uint64_t r = 0; r < rows; ++r) {
      for (uint64_t g = 0; g < t.desc.groups_per_row; ++g) {
        float amax = 0;
        for (uint64_t j = g * 32; j < std::min<uint64_t>(cols, g * 32 + 32); ++j) {
          amax = std::max(amax, std::fabs(w[r * cols + j]));
        }
        const uint16_t h = v.scales[r * t.desc.groups_per_row + g];
        EXPECT_GE(F16ToF32(h), amax / 127.0f);
        EXPECT_LT(F16ToF32(static_cast<uint16_t>(h - 1)), amax / 127.0f);
      }
      // Padding codes are 0.
      for (uint64_t j = cols; j < t.desc.padded_cols; ++j) {
        EXPECT_EQ(v.data[r * t.desc.row_bytes + j], 0) << j;
      }
    }
  }
}

TEST(QuantizeInt8, RelativeRmseOnGaussian) {
  const std::vector<float> w = Gaussian(64 * 256, 3);
  const QuantizedTensor t = Quantize(Format::kInt8, w.data(), 64, 256);
  const double rel = RelativeRmse(w, Dequantize(t));
  EXPECT_LT(rel, 0.008);  // ~0.0054 measured
  EXPECT_GT(rel, 0.002);
}

TEST(QuantizeInt8, MaxMagnitudeMapsToCode127) {
  std::vector<float> w(32, 0.0f);
  w[0] = 1.0f;
  w[1] = -1.0f;
  w[2] = 0.5f;
  const QuantizedTensor t = Quantize(Format::kInt8, w.data(), 1, 32);
  const QTensor v = t.view();
  // 1/127 is not an f16: the scale is the next f16 up, so 1.0 -> 127.
  EXPECT_EQ(static_cast<int8_t>(v.data[0]), 127);
  EXPECT_EQ(static_cast<int8_t>(v.data[1]), -127);
  // 0.5 / s is just below 63.5 because s > 1/127: rounds to 63.
  EXPECT_EQ(static_cast<int8_t>(v.data[2]), 63);
  // 1/127 = 0.0078740...: f16 0x2008 = 0.0078125·(1 + 8/1024) = 0.00787354 is
  // just below it, so the stored scale is 0x2009.
  EXPECT_EQ(v.scales[0], 0x2009);
}

TEST(QuantizeInt8, ZerosConstantsHugeTinyAndNonFinite) {
  std::vector<float> w(5 * 32, 0.0f);
  // Row 0: all zero.  Row 1: constant.  Row 2: huge (scale clamps to 65504).
  // Row 3: tiny (subnormal f16 scales).  Row 4: NaN/Inf mixed with normal values.
  for (int j = 0; j < 32; ++j) {
    w[32 + j] = 0.3f;
    w[64 + j] = (j % 2 ? -1.0f : 1.0f) * 1e9f * (j + 1) / 32.0f;
    w[96 + j] = 1e-6f * static_cast<float>(j - 16);
    w[128 + j] = 0.01f * static_cast<float>(j - 16);
  }
  w[128 + 3] = kNaN;
  w[128 + 4] = kInf;
  w[128 + 5] = -kInf;
  const QuantizedTensor t = Quantize(Format::kInt8, w.data(), 5, 32);
  const QTensor v = t.view();
  std::vector<float> d = Dequantize(t);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(d[j], 0.0f);
  EXPECT_EQ(v.scales[0], 0x0001);  // all-zero group: smallest positive f16
  for (int j = 0; j < 32; ++j) EXPECT_NEAR(d[32 + j], 0.3f, 0.3f / 254 * 1.01f);
  // Huge: scale saturates at 65504, codes at ±127.
  EXPECT_EQ(v.scales[2], 0x7bff);
  EXPECT_EQ(d[64 + 31], -127.0f * 65504.0f);
  EXPECT_EQ(d[64 + 0], 127.0f * 65504.0f);
  // Tiny: subnormal scale, the bound still holds.
  const float s3 = F16ToF32(v.scales[3]);
  EXPECT_LT(s3, 0x1p-14f);
  for (int j = 0; j < 32; ++j) EXPECT_LE(std::fabs(d[96 + j] - w[96 + j]), 0.5f * s3 * 1.00001f);
  // NaN -> 0, ±Inf -> ±127·s; the scale comes from the finite values only.
  const float s4 = F16ToF32(v.scales[4]);
  EXPECT_LE(s4, 0.16f / 127.0f * 1.001f);
  EXPECT_EQ(d[128 + 3], 0.0f);
  EXPECT_EQ(d[128 + 4], 127.0f * s4);
  EXPECT_EQ(d[128 + 5], -127.0f * s4);
  for (int j = 6; j < 32; ++j) {
    EXPECT_LE(std::fabs(d[128 + j] - w[128 + j]), 0.5f * s4 * 1.00001f) << j;
  }
}

// ---------------------------------------------------------------- q4

struct Q4Case {
  uint32_t group;
  bool asymmetric;
  bool permuted;
};

void PrintTo(const Q4Case& c, std::ostream* os) {
  *os << "g" << c.group << (c.asymmetric ? " asym" : " sym") << (c.permuted ? " perm" : "");
}

class Q4Test : public ::testing::TestWithParam<Q4Case> {};

TEST_P(Q4Test, RandomOddSizesMeetBoundAndPaddingDecodesToZero) {
  const Q4Case c = GetParam();
  for (const auto& [rows, cols] :
       {std::pair<uint64_t, uint64_t>{1, 1}, {3, 37}, {2, 64}, {4, 100}, {3, 130}, {2, 333}}) {
    const std::vector<float> w = Gaussian(rows * cols, static_cast<uint32_t>(rows * 7 + cols));
    const std::vector<int32_t> perm = RandomPerm(cols, static_cast<uint32_t>(cols));
    QuantizeOptions o;
    o.group_size = c.group;
    o.asymmetric = c.asymmetric;
    o.perm = c.permuted ? perm.data() : nullptr;
    const QuantizedTensor t = Quantize(Format::kQ4, w.data(), rows, cols, o);
    const TensorDesc& d = t.desc;
    const QTensor v = t.view();
    EXPECT_EQ(d.group_size, c.group);
    EXPECT_EQ(d.has_perm, c.permuted);
    EXPECT_EQ(d.padded_cols % 64, 0u);
    EXPECT_EQ(CheckGroupedBound(t, w, o.perm), rows * cols);
    if (c.permuted) {
      EXPECT_EQ(0, std::memcmp(v.perm, perm.data(), cols * 4));
    }
    for (uint64_t r = 0; r < rows; ++r) {
      for (uint64_t g = 0; g < d.groups_per_row; ++g) {
        const uint8_t z = v.zeros[r * d.groups_per_row + g];
        const uint16_t s = v.scales[r * d.groups_per_row + g];
        EXPECT_LE(z, 15);
        if (!c.asymmetric) {
          EXPECT_EQ(z, 8);
        }
        EXPECT_GT(F16ToF32(s), 0.0f);
        EXPECT_LE(s, 0x7bff);
      }
      // Every padding code equals its group's zero point, so decodes to 0.
      for (uint64_t j = cols; j < d.padded_cols; ++j) {
        EXPECT_EQ(Q4Code(v, r, j), v.zeros[r * d.groups_per_row + j / d.group_size]) << j;
      }
    }
    // Original-order decode == stored-order decode scattered through perm.
    std::vector<float> orig(cols), stored(cols);
    for (uint64_t r = 0; r < rows; ++r) {
      DequantizeRow(v, r, orig.data());
      DequantizeRowStored(v, r, stored.data());
      for (uint64_t j = 0; j < cols; ++j) {
        EXPECT_EQ(orig[c.permuted ? perm[j] : j], stored[j]);
      }
    }
  }
}

TEST_P(Q4Test, RelativeRmseOnGaussian) {
  const Q4Case c = GetParam();
  const std::vector<float> w = Gaussian(32 * 512, 9);
  const std::vector<int32_t> perm = RandomPerm(512, 10);
  QuantizeOptions o;
  o.group_size = c.group;
  o.asymmetric = c.asymmetric;
  o.perm = c.permuted ? perm.data() : nullptr;
  const double rel = RelativeRmse(w, Dequantize(Quantize(Format::kQ4, w.data(), 32, 512, o)));
  // Gaussian data: ~0.08 (g32) to ~0.11 (g128); asymmetric a bit better.
  EXPECT_LT(rel, 0.13) << c.group;
  EXPECT_GT(rel, 0.05) << c.group;
}

INSTANTIATE_TEST_SUITE_P(AllGroupsModesPerm, Q4Test,
                         ::testing::Values(Q4Case{32, true, false}, Q4Case{64, true, false},
                                           Q4Case{128, true, false}, Q4Case{32, false, false},
                                           Q4Case{64, false, false}, Q4Case{128, false, false},
                                           Q4Case{32, true, true}, Q4Case{128, true, true},
                                           Q4Case{64, false, true}, Q4Case{128, false, true}),
                         [](const auto& info) {
                           return "g" + std::to_string(info.param.group) +
                                  (info.param.asymmetric ? "Asym" : "Sym") +
                                  (info.param.permuted ? "Perm" : "");
                         });

// A hand-computed example: one row of 64 inputs, group 32, asymmetric.
// Group 0: min -1.5, max 6.0 -> scale (6 + 1.5)/15 = 0.5 (f16 0x3800),
//          zero round(1.5/0.5) = 3, q = clamp(round(w/0.5) + 3, 0, 15).
// Group 1: all zero -> GPTQ's [-1, 1] range -> scale = smallest f16 >= 2/15
//          = 1093/8192 (0x3045), zero = round(1/0.13342...) = round(7.495) = 7.
TEST(QuantizeQ4, HandComputedAsymmetricExample) {
  std::vector<float> w(64, 0.0f);
  w[0] = -1.5f;  // -3 + 3 = 0
  w[1] = 6.0f;   // 12 + 3 = 15
  w[2] = 1.26f;  // round(2.52) = 3 -> 6 -> 1.5
  w[3] = 0.25f;  // round(0.5) = 0 (tie to even) -> 3 -> 0
  w[4] = 0.75f;  // round(1.5) = 2 (tie to even) -> 5 -> 1.0
  w[5] = -0.3f;  // round(-0.6) = -1 -> 2 -> -0.5
  QuantizeOptions o;
  o.group_size = 32;
  const QuantizedTensor t = Quantize(Format::kQ4, w.data(), 1, 64, o);
  const QTensor v = t.view();
  ASSERT_EQ(t.desc.row_bytes, 32u);
  ASSERT_EQ(t.desc.groups_per_row, 2u);
  EXPECT_EQ(v.scales[0], 0x3800);
  EXPECT_EQ(v.zeros[0], 3);
  EXPECT_EQ(v.scales[1], 0x3045);
  EXPECT_EQ(v.zeros[1], 7);
  // Byte j: input j in the low nibble, input j + 32 (group 1, code 7) high.
  const uint8_t expected_bytes[6] = {0x70, 0x7f, 0x76, 0x73, 0x75, 0x72};
  for (int j = 0; j < 6; ++j) EXPECT_EQ(v.data[j], expected_bytes[j]) << j;
  for (int j = 6; j < 32; ++j) EXPECT_EQ(v.data[j], 0x73) << j;
  std::vector<float> d(64);
  DequantizeRow(v, 0, d.data());
  const float expected[6] = {-1.5f, 6.0f, 1.5f, 0.0f, 1.0f, -0.5f};
  for (int j = 0; j < 6; ++j) EXPECT_EQ(d[j], expected[j]) << j;
  for (int j = 6; j < 64; ++j) EXPECT_EQ(d[j], 0.0f) << j;
}

// Symmetric: max|w| = 7.5 -> scale 2·7.5/15 = 1.0, zero 8.
TEST(QuantizeQ4, HandComputedSymmetricExampleAndDequantOfAHandBuiltBlob) {
  std::vector<float> w(32, 0.0f);
  w[0] = 7.5f;   // round(7.5) = 8 -> 16 -> clamped 15 -> 7.0
  w[1] = -7.5f;  // -8 -> 0 -> -8.0
  w[2] = 2.5f;   // 2 (even) -> 10 -> 2.0
  w[3] = 3.5f;   // 4 (even) -> 12 -> 4.0
  w[4] = -0.4f;  // 0 -> 8 -> 0
  QuantizeOptions o;
  o.group_size = 32;
  o.asymmetric = false;
  const QuantizedTensor t = Quantize(Format::kQ4, w.data(), 1, 32, o);
  const QTensor v = t.view();
  EXPECT_EQ(t.desc.padded_cols, 64u);
  EXPECT_EQ(t.desc.groups_per_row, 2u);  // group 1 is all padding
  EXPECT_EQ(v.scales[0], 0x3c00);
  EXPECT_EQ(v.zeros[0], 8);
  EXPECT_EQ(v.zeros[1], 8);
  const uint8_t expected_bytes[5] = {0x8f, 0x80, 0x8a, 0x8c, 0x88};
  for (int j = 0; j < 5; ++j) EXPECT_EQ(v.data[j], expected_bytes[j]) << j;
  std::vector<float> d(32);
  DequantizeRow(v, 0, d.data());
  EXPECT_EQ(d[0], 7.0f);
  EXPECT_EQ(d[1], -8.0f);
  EXPECT_EQ(d[2], 2.0f);
  EXPECT_EQ(d[3], 4.0f);
  EXPECT_EQ(d[4], 0.0f);

  // A blob built by hand: 2 rows × 64 inputs, group 64, with a permutation
  // that swaps inputs 0 and 63. Row r, stored column j has code (j + r) % 16;
  // scales 0.25 (row 0) and 2.0 (row 1), zeros 5 and 0.
  TensorDesc desc = MakeTensorDesc(Format::kQ4, 2, 64, 64, true);
  AlignedBuffer blob(desc.total_bytes);
  for (int r = 0; r < 2; ++r) {
    for (int j = 0; j < 32; ++j) {
      blob.data()[desc.data_offset + r * 32 + j] =
          static_cast<uint8_t>(((j + r) % 16) | (((j + 32 + r) % 16) << 4));
    }
  }
  const uint16_t scales[2] = {F32ToF16(0.25f), F32ToF16(2.0f)};
  std::memcpy(blob.data() + desc.scales_offset, scales, 4);
  blob.data()[desc.zeros_offset] = 5;
  blob.data()[desc.zeros_offset + 1] = 0;
  std::vector<int32_t> perm(64);
  std::iota(perm.begin(), perm.end(), 0);
  std::swap(perm[0], perm[63]);
  std::memcpy(blob.data() + desc.perm_offset, perm.data(), 256);
  const QTensor hv = ViewTensor(desc, blob.data());
  std::vector<float> row(64), stored(64);
  for (int r = 0; r < 2; ++r) {
    DequantizeRowStored(hv, r, stored.data());
    DequantizeRow(hv, r, row.data());
    const float s = r == 0 ? 0.25f : 2.0f;
    const int z = r == 0 ? 5 : 0;
    for (int j = 0; j < 64; ++j) {
      EXPECT_EQ(stored[j], s * static_cast<float>((j + r) % 16 - z)) << r << " " << j;
    }
    EXPECT_EQ(row[63], stored[0]);
    EXPECT_EQ(row[0], stored[63]);
    for (int j = 1; j < 63; ++j) EXPECT_EQ(row[j], stored[j]);
  }
}

TEST(QuantizeQ4, ConstantsHugeTinyAndNonFinite) {
  std::vector<float> w(4 * 64, 0.0f);
  for (int j = 0; j < 64; ++j) {
    w[j] = 0.7f;                                           // constant positive
    w[64 + j] = -0.7f;                                     // constant negative
    w[128 + j] = 1e7f * static_cast<float>(j - 32);        // huge: scale clamps
    w[192 + j] = 0.1f * static_cast<float>((j % 16) - 8);  // NaN/Inf below
  }
  w[192 + 1] = kNaN;
  w[192 + 2] = kInf;
  w[192 + 3] = -kInf;
  for (bool asym : {true, false}) {
    QuantizeOptions o;
    o.group_size = 64;
    o.asymmetric = asym;
    const QuantizedTensor t = Quantize(Format::kQ4, w.data(), 4, 64, o);
    const QTensor v = t.view();
    std::vector<float> d = Dequantize(t);
    for (int j = 0; j < 64; ++j) {
      EXPECT_NEAR(d[j], 0.7f, asym ? 0.7f / 30 * 1.01f : 0.7f / 15 * 1.01f) << asym;
      EXPECT_NEAR(d[64 + j], -0.7f, asym ? 0.7f / 30 * 1.01f : 0.7f / 15 * 1.01f) << asym;
    }
    EXPECT_EQ(v.scales[2], 0x7bff);  // (huge range)/15 > 65504: saturated scale
    for (int j = 0; j < 64; ++j) EXPECT_TRUE(std::isfinite(d[128 + j]));
    const float s3 = F16ToF32(v.scales[3]);
    const int z3 = v.zeros[3];
    EXPECT_EQ(d[192 + 1], 0.0f);                              // NaN -> 0
    EXPECT_EQ(d[192 + 2], s3 * static_cast<float>(15 - z3));  // +Inf -> code 15
    EXPECT_EQ(d[192 + 3], s3 * static_cast<float>(0 - z3));   // -Inf -> code 0
    for (int j = 4; j < 64; ++j) {
      EXPECT_LE(std::fabs(d[192 + j] - w[192 + j]), 0.5f * s3 * 1.00001f) << j;
    }
  }
}

TEST(QuantizeQ4, InvalidPermutationsAndGroupsThrow) {
  std::vector<float> w(2 * 64, 0.5f);
  std::vector<int32_t> perm(64);
  std::iota(perm.begin(), perm.end(), 0);
  QuantizeOptions o;
  o.perm = perm.data();
  perm[5] = 6;  // duplicate
  EXPECT_THROW(Quantize(Format::kQ4, w.data(), 2, 64, o), Error);
  perm[5] = 64;  // out of range
  EXPECT_THROW(Quantize(Format::kQ4, w.data(), 2, 64, o), Error);
  perm[5] = -1;
  EXPECT_THROW(Quantize(Format::kQ4, w.data(), 2, 64, o), Error);
  perm[5] = 5;
  EXPECT_NO_THROW(Quantize(Format::kQ4, w.data(), 2, 64, o));
  EXPECT_THROW(Quantize(Format::kInt8, w.data(), 2, 64, o), Error);  // perm only for q4
  QuantizeOptions bad_group;
  bad_group.group_size = 16;
  EXPECT_THROW(Quantize(Format::kQ4, w.data(), 2, 64, bad_group), Error);
  EXPECT_THROW(Quantize(Format::kQ4, w.data(), 0, 64), Error);
  try {
    perm[7] = 3;
    ValidatePermutation(perm.data(), 64);
    FAIL() << "expected qlm::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("3 appears twice"), std::string::npos) << e.what();
  }
}

// ---------------------------------------------------------------- sfp8

TEST(QuantizeSfp8, TensorScaleMapsMaxToOneEightSevenFiveAndCodesMatchEncode) {
  std::vector<float> w = Gaussian(6 * 45, 11, 0.05f);
  w[17] = -0.4f;  // the max magnitude
  const QuantizedTensor t = Quantize(Format::kSFP8, w.data(), 6, 45);
  EXPECT_FLOAT_EQ(t.desc.tensor_scale, 0.4f / 1.875f);
  EXPECT_EQ(t.desc.tensor_scale, Sfp8TensorScale(w.data(), w.size()));
  const QTensor v = t.view();
  EXPECT_EQ(v.data[17], 0xff);
  std::vector<float> d = Dequantize(t);
  for (size_t i = 0; i < w.size(); ++i) {
    EXPECT_EQ(v.data[i], Sfp8Encode(w[i] / t.desc.tensor_scale));
    EXPECT_EQ(d[i], Sfp8Decode(v.data[i]) * t.desc.tensor_scale);
    // Relative error <= 1/17 for |w| >= max|w| · 2^-7 / 1.875.
    if (std::fabs(w[i]) >= 0.4f * 0x1p-7f / 1.875f) {
      EXPECT_LE(std::fabs(d[i] - w[i]), std::fabs(w[i]) / 17 * 1.0001f) << i;
    }
  }
  const double rel = RelativeRmse(w, d);
  EXPECT_LT(rel, 0.04);
}

TEST(QuantizeSfp8, ZerosAndNonFinite) {
  std::vector<float> zeros(10, 0.0f);
  const QuantizedTensor tz = Quantize(Format::kSFP8, zeros.data(), 2, 5);
  EXPECT_EQ(tz.desc.tensor_scale, 1.0f);
  for (float x : Dequantize(tz)) EXPECT_EQ(x, 0.0f);

  std::vector<float> w = {0.5f, kNaN, kInf, -kInf, -1.0f, 0.25f};
  const QuantizedTensor t = Quantize(Format::kSFP8, w.data(), 1, 6);
  EXPECT_EQ(t.desc.tensor_scale, 1.0f / 1.875f);  // finite values only
  const std::vector<float> d = Dequantize(t);
  EXPECT_EQ(d[1], 0.0f);
  EXPECT_FLOAT_EQ(d[2], 1.0f);  // saturates to +1.875·scale = max finite |w|
  EXPECT_FLOAT_EQ(d[3], -1.0f);
  EXPECT_FLOAT_EQ(d[4], -1.0f);
  EXPECT_EQ(t.view().data[2], 0x7f);
  EXPECT_EQ(t.view().data[3], 0xff);
  EXPECT_EQ(Sfp8ScaleForMaxAbs(kInf), 1.0f);
  EXPECT_EQ(Sfp8ScaleForMaxAbs(kNaN), 1.0f);
  EXPECT_EQ(Sfp8ScaleForMaxAbs(3.75f), 2.0f);
}

// ---------------------------------------------------------------- row ranges

TEST(QuantizeRowsInto, DisjointRangesReproduceQuantizeForEveryFormat) {
  const uint64_t rows = 11, cols = 150;
  const std::vector<float> w = Gaussian(rows * cols, 12);
  const std::vector<int32_t> perm = RandomPerm(cols, 13);
  struct Case {
    Format f;
    QuantizeOptions o;
  };
  QuantizeOptions q4p;
  q4p.group_size = 64;
  q4p.perm = perm.data();
  QuantizeOptions q4s;
  q4s.asymmetric = false;
  for (const Case& c : {Case{Format::kF32, {}}, Case{Format::kBF16, {}}, Case{Format::kInt8, {}},
                        Case{Format::kQ4, q4p}, Case{Format::kQ4, q4s}, Case{Format::kSFP8, {}}}) {
    const QuantizedTensor whole = Quantize(c.f, w.data(), rows, cols, c.o);
    QuantizedTensor parts = AllocateQuantized(c.f, rows, cols, c.o);
    if (c.f == Format::kSFP8) parts.desc.tensor_scale = Sfp8TensorScale(w.data(), w.size());
    for (uint64_t r0 : {7, 0, 3}) {  // [7,11), [0,3), [3,7), out of order
      const uint64_t r1 = r0 == 7 ? 11 : (r0 == 0 ? 3 : 7);
      QuantizeRowsInto(w.data() + r0 * cols, r0, r1, parts, c.o);
    }
    ASSERT_EQ(parts.desc.total_bytes, whole.desc.total_bytes);
    EXPECT_EQ(0, std::memcmp(parts.blob.data(), whole.blob.data(), whole.desc.total_bytes))
        << FormatName(c.f);
  }
  QuantizedTensor t = AllocateQuantized(Format::kInt8, rows, cols);
  EXPECT_THROW(QuantizeRowsInto(w.data(), 5, 12, t), Error);
  EXPECT_THROW(QuantizeRowsInto(w.data(), 6, 5, t), Error);
  QuantizedTensor s = AllocateQuantized(Format::kSFP8, rows, cols);
  s.desc.tensor_scale = 0.0f;
  EXPECT_THROW(QuantizeRowsInto(w.data(), 0, 1, s), Error);
}

TEST(Dequantize, RowOutOfRangeThrows) {
  const std::vector<float> w = Gaussian(2 * 8, 14);
  const QuantizedTensor t = Quantize(Format::kInt8, w.data(), 2, 8);
  std::vector<float> out(8);
  EXPECT_THROW(DequantizeRow(t.view(), 2, out.data()), Error);
  EXPECT_NO_THROW(DequantizeRow(t.view(), 1, out.data()));
}

}  // namespace
}  // namespace qlm
