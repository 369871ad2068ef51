#include "quant/sfp8.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace qlm {
namespace {

// The 127 positive magnitudes in code order (index = code & 0x7f).
std::vector<float> PositiveTable() {
  std::vector<float> t;
  for (uint32_t c = 0; c < 128; ++c) t.push_back(Sfp8Decode(static_cast<uint8_t>(c)));
  return t;
}

// Brute force: the code of the nearest table entry, ties to the even code.
uint8_t NearestCode(float v) {
  if (std::isnan(v)) return 0;
  static const std::vector<float> table = PositiveTable();
  const double a = std::fabs(static_cast<double>(v));
  uint32_t best = 0;
  double best_err = a;
  for (uint32_t c = 1; c < 128; ++c) {
    const double err = std::fabs(a - table[c]);
    if (err < best_err || (err == best_err && (c & 1) == 0)) {
      best = c;
      best_err = err;
    }
  }
  if (best == 0) return 0;
  return static_cast<uint8_t>(best | (v < 0 ? 0x80u : 0u));
}

TEST(Sfp8, DocumentedTableValues) {
  EXPECT_EQ(Sfp8Decode(0x00), 0.0f);
  EXPECT_EQ(Sfp8Decode(0x80), 0.0f);  // reserved
  EXPECT_EQ(Sfp8Decode(0x01), 1.25f * 0x1p-23f);
  EXPECT_EQ(Sfp8Decode(0x02), 1.5f * 0x1p-23f);
  EXPECT_EQ(Sfp8Decode(0x04), 0x1p-22f);
  EXPECT_EQ(Sfp8Decode(0x3f), 1.75f * 0x1p-8f);
  EXPECT_EQ(Sfp8Decode(0x40), 0x1p-7f);
  EXPECT_EQ(Sfp8Decode(0x41), 1.125f * 0x1p-7f);
  EXPECT_EQ(Sfp8Decode(0x78), 1.0f);
  EXPECT_EQ(Sfp8Decode(0x7f), 1.875f);
  EXPECT_EQ(Sfp8Decode(0xff), -1.875f);
  EXPECT_EQ(Sfp8Decode(0xf8), -1.0f);
  EXPECT_EQ(Sfp8Decode(0x81), -1.25f * 0x1p-23f);
  // Small range: 2^(e-23)·(1 + m/4) with e = bits 5..2, m = bits 1..0.
  EXPECT_EQ(Sfp8Decode(0x27), 1.75f * 0x1p-14f);  // e = 9, m = 3
  // Large range: 2^(e-7)·(1 + m/8) with e = bits 5..3, m = bits 2..0.
  EXPECT_EQ(Sfp8Decode(0x6d), 1.625f * 0x1p-2f);  // e = 5, m = 5
}

TEST(Sfp8, MagnitudesStrictlyIncreaseWithCode) {
  const std::vector<float> t = PositiveTable();
  for (uint32_t c = 1; c < 128; ++c) EXPECT_LT(t[c - 1], t[c]) << c;
  for (uint32_t c = 1; c < 128; ++c) {
    EXPECT_EQ(Sfp8Decode(static_cast<uint8_t>(c | 0x80)), -t[c]) << c;
  }
}

TEST(Sfp8, AllCodesRoundTripExactly) {
  int checked = 0;
  for (uint32_t c = 0; c < 256; ++c) {
    if (c == 0x80) continue;
    const uint8_t code = static_cast<uint8_t>(c);
    EXPECT_EQ(Sfp8Encode(Sfp8Decode(code)), code) << "code " << c;
    ++checked;
  }
  EXPECT_EQ(checked, 255);
  // The reserved code decodes to 0, which encodes as 0x00: 0x80 is never produced.
  EXPECT_EQ(Sfp8Encode(Sfp8Decode(0x80)), 0x00);
  EXPECT_EQ(Sfp8Encode(-0.0f), 0x00);
  EXPECT_EQ(Sfp8Encode(-1e-30f), 0x00);
}

TEST(Sfp8, MidpointsRoundToEvenCodeAndNeighboursToNearest) {
  const std::vector<float> t = PositiveTable();
  for (uint32_t c = 1; c < 128; ++c) {
    // The midpoint of two table entries is exact in f32 (few mantissa bits).
    const float mid = (t[c - 1] + t[c]) / 2.0f;
    const uint32_t even = (c & 1) ? c - 1 : c;
    EXPECT_EQ(Sfp8Encode(mid), even) << "midpoint below code " << c;
    EXPECT_EQ(Sfp8Encode(std::nextafter(mid, 0.0f)), c - 1) << c;
    EXPECT_EQ(Sfp8Encode(std::nextafter(mid, 2.0f)), c) << c;
    EXPECT_EQ(Sfp8Encode(-mid), even == 0 ? 0 : (even | 0x80)) << c;
  }
}

TEST(Sfp8, EncodeIsMonotonicAndNearestOnADenseSweep) {
  // Every 2^9-th f32 bit pattern in [0, 2]: ~2M values covering all
  // exponents, checked for monotonicity; every 64th of them against the
  // brute-force nearest code.
  const uint32_t end = std::bit_cast<uint32_t>(2.0f);
  uint8_t prev = 0;
  uint32_t n = 0;
  for (uint32_t u = 0; u <= end; u += 1u << 9, ++n) {
    const float v = std::bit_cast<float>(u);
    const uint8_t c = Sfp8Encode(v);
    ASSERT_LE(c, 0x7f) << v;
    ASSERT_GE(c, prev) << "encode not monotonic at " << v;
    prev = c;
    if (n % 64 == 0) {
      ASSERT_EQ(c, NearestCode(v)) << v;
    }
    ASSERT_EQ(Sfp8Encode(-v), c == 0 ? 0 : (c | 0x80)) << v;
  }
}

TEST(Sfp8, SaturatesAndHandlesNonFinite) {
  EXPECT_EQ(Sfp8Encode(1.875f), 0x7f);
  EXPECT_EQ(Sfp8Encode(1.9f), 0x7f);
  EXPECT_EQ(Sfp8Encode(2.0f), 0x7f);
  EXPECT_EQ(Sfp8Encode(1e30f), 0x7f);
  EXPECT_EQ(Sfp8Encode(-1e30f), 0xff);
  EXPECT_EQ(Sfp8Encode(std::numeric_limits<float>::infinity()), 0x7f);
  EXPECT_EQ(Sfp8Encode(-std::numeric_limits<float>::infinity()), 0xff);
  EXPECT_EQ(Sfp8Encode(std::numeric_limits<float>::quiet_NaN()), 0x00);
  EXPECT_EQ(Sfp8Encode(-std::numeric_limits<float>::quiet_NaN()), 0x00);
  EXPECT_EQ(Sfp8Encode(std::numeric_limits<float>::denorm_min()), 0x00);
  EXPECT_EQ(Sfp8Encode(0.625f * 0x1p-23f), 0x00);  // tie between 0 and code 1: even
  EXPECT_EQ(Sfp8Encode(0.63f * 0x1p-23f), 0x01);
  EXPECT_EQ(Sfp8Encode(0x1p-23f), 0x01);  // 2^-23 itself is not representable
}

// The documented bounds: relative error <= 1/17 for |v| in [2^-7, 1.875],
// <= 1/9 for |v| in [1.25·2^-23, 2^-7), absolute error <= 0.625·2^-23 below.
TEST(Sfp8, StatedMaxRelativeErrorHolds) {
  double worst_large = 0, worst_small = 0, worst_abs_tiny = 0;
  const uint32_t end = std::bit_cast<uint32_t>(1.875f);
  for (uint32_t u = 1; u <= end; u += 37) {
    const float v = std::bit_cast<float>(u);
    const double err = std::fabs(static_cast<double>(Sfp8Decode(Sfp8Encode(v))) - v);
    if (v >= 0x1p-7f) {
      worst_large = std::max(worst_large, err / v);
    } else if (v >= 1.25f * 0x1p-23f) {
      worst_small = std::max(worst_small, err / v);
    } else {
      worst_abs_tiny = std::max(worst_abs_tiny, err);
    }
  }
  EXPECT_LE(worst_large, 1.0 / 17.0 + 1e-9);
  EXPECT_LE(worst_small, 1.0 / 9.0 + 1e-9);
  EXPECT_LE(worst_abs_tiny, 0.625 * 0x1p-23 + 1e-15);
  // The bounds are tight (attained at 1 + 1/16 and 1 + 1/8 of a binade).
  EXPECT_GT(worst_large, 0.058);
  EXPECT_GT(worst_small, 0.11);
}

}  // namespace
}  // namespace qlm
