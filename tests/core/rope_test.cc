#include "core/rope.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace qlm {
namespace {

TEST(Rope, DefaultFrequencies) {
  const RopeFreqs f = MakeRopeFreqs(10000.0f, 8, RopeScaling{});
  ASSERT_EQ(f.inv_freq.size(), 4u);
  for (int i = 0; i < 4; ++i) {
    EXPECT_NEAR(f.inv_freq[i], std::pow(10000.0, -2.0 * i / 8), 1e-7) << i;
  }
}

TEST(Rope, LinearScalingDividesByFactor) {
  RopeScaling s;
  s.type = RopeScaling::Type::kLinear;
  s.factor = 8.0f;
  const RopeFreqs plain = MakeRopeFreqs(1e6f, 16, RopeScaling{});
  const RopeFreqs scaled = MakeRopeFreqs(1e6f, 16, s);
  for (size_t i = 0; i < plain.inv_freq.size(); ++i) {
    EXPECT_FLOAT_EQ(scaled.inv_freq[i], plain.inv_freq[i] / 8.0f);
  }
}

// Llama 3.1's scaling, recomputed here in double from the published formula.
TEST(Rope, Llama3ScalingBands) {
  RopeScaling s;
  s.type = RopeScaling::Type::kLlama3;
  s.factor = 8.0f;
  s.low_freq_factor = 1.0f;
  s.high_freq_factor = 4.0f;
  s.original_max_position_embeddings = 8192;
  const int dim = 128;
  const double base = 500000.0;
  const RopeFreqs f = MakeRopeFreqs(static_cast<float>(base), dim, s);
  int high = 0, low = 0, mid = 0;
  for (int i = 0; i < dim / 2; ++i) {
    const double inv = 1.0 / std::pow(base, 2.0 * i / dim);
    const double wavelen = 2 * M_PI / inv;
    double expected;
    if (wavelen < 8192.0 / 4.0) {
      expected = inv, ++high;
    } else if (wavelen > 8192.0 / 1.0) {
      expected = inv / 8.0, ++low;
    } else {
      const double smooth = (8192.0 / wavelen - 1.0) / (4.0 - 1.0);
      expected = (1 - smooth) * inv / 8.0 + smooth * inv, ++mid;
    }
    EXPECT_NEAR(f.inv_freq[i], expected, 1e-5 * expected) << i;
  }
  EXPECT_GT(high, 0);
  EXPECT_GT(low, 0);
  EXPECT_GT(mid, 0);
}

TEST(Rope, TablesHoldCosSinOfPositionTimesFrequency) {
  const RopeFreqs f = MakeRopeFreqs(10000.0f, 8, RopeScaling{});
  std::vector<float> c(3 * 4), s(3 * 4);
  FillRopeTables(f, 100, 3, c.data(), s.data());
  for (int t = 0; t < 3; ++t) {
    for (int i = 0; i < 4; ++i) {
      const double angle = (100.0 + t) * f.inv_freq[i];
      EXPECT_NEAR(c[t * 4 + i], std::cos(angle), 1e-5);
      EXPECT_NEAR(s[t * 4 + i], std::sin(angle), 1e-5);
    }
  }
}

}  // namespace
}  // namespace qlm
