#include "quant/half.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

namespace qlm {
namespace {

TEST(BF16, EveryBF16ValueRoundTripsExactly) {
  for (uint32_t b = 0; b <= 0xffff; ++b) {
    const float f = BF16ToF32(static_cast<uint16_t>(b));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(BF16ToF32(F32ToBF16(f)))) << b;
    } else {
      EXPECT_EQ(F32ToBF16(f), b) << b;
    }
  }
}

TEST(BF16, RoundsToNearestEven) {
  // 1 + 2^-8 is exactly halfway between bf16 1.0 and 1.0078125: ties to even (1.0).
  EXPECT_EQ(F32ToBF16(1.0f + 0x1p-8f), 0x3f80);
  // Slightly above halfway rounds up.
  EXPECT_EQ(F32ToBF16(1.0f + 0x1p-8f + 0x1p-20f), 0x3f81);
  // 1.0078125 + 2^-8 is halfway between odd 0x3f81 and even 0x3f82: rounds up to even.
  EXPECT_EQ(F32ToBF16(1.0078125f + 0x1p-8f), 0x3f82);
  EXPECT_EQ(F32ToBF16(-2.0f), 0xc000);
}

TEST(BF16, OverflowGoesToInfinityAndNaNStaysNaN) {
  EXPECT_EQ(F32ToBF16(std::numeric_limits<float>::max()), 0x7f80);
  EXPECT_EQ(F32ToBF16(std::numeric_limits<float>::infinity()), 0x7f80);
  // A NaN whose payload is only in the low 16 bits must not become Inf.
  const float low_payload_nan = std::bit_cast<float>(0x7f800001u);
  EXPECT_TRUE(std::isnan(BF16ToF32(F32ToBF16(low_payload_nan))));
}

TEST(F16, EveryF16ValueRoundTripsExactly) {
  for (uint32_t h = 0; h <= 0xffff; ++h) {
    const float f = F16ToF32(static_cast<uint16_t>(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(F16ToF32(F32ToF16(f)))) << h;
    } else {
      EXPECT_EQ(F32ToF16(f), h) << h;
    }
  }
}

TEST(F16, RoundingOverflowAndSubnormals) {
  EXPECT_EQ(F32ToF16(65504.0f), 0x7bff);
  EXPECT_EQ(F32ToF16(65519.0f), 0x7bff);  // below the rounding midpoint
  EXPECT_EQ(F32ToF16(65520.0f), 0x7c00);  // midpoint ties to even = Inf
  EXPECT_EQ(F32ToF16(0x1p-24f), 0x0001);  // smallest subnormal
  EXPECT_EQ(F32ToF16(0x1p-25f), 0x0000);  // halfway to zero: ties to even
  EXPECT_EQ(F32ToF16(0x1.8p-25f), 0x0001);
  EXPECT_EQ(F32ToF16(1.0f + 0x1p-11f), 0x3c00);  // tie to even
}

}  // namespace
}  // namespace qlm
