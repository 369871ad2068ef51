#include "core/sampling.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <vector>

#include "base/error.h"

namespace qlm {
namespace {

SamplingParams NoFilters(float temperature = 1.0f) {
  SamplingParams p;
  p.temperature = temperature;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  p.repeat_penalty = 1.0f;
  return p;
}

std::vector<float> LogProbs(std::vector<float> probs) {
  for (float& p : probs) p = std::log(p);
  return probs;
}

TEST(Sampling, RejectsBadParameters) {
  auto expect_bad = [](auto edit) {
    SamplingParams p;
    edit(p);
    EXPECT_THROW(ValidateSamplingParams(p), UsageError);
    EXPECT_THROW(Sampler(p, 10), UsageError);
  };
  expect_bad([](SamplingParams& p) { p.temperature = -1.0f; });
  expect_bad([](SamplingParams& p) { p.temperature = NAN; });
  expect_bad([](SamplingParams& p) { p.top_k = -1; });
  expect_bad([](SamplingParams& p) { p.top_p = 0.0f; });
  expect_bad([](SamplingParams& p) { p.top_p = 2.0f; });
  expect_bad([](SamplingParams& p) { p.min_p = -0.1f; });
  expect_bad([](SamplingParams& p) { p.min_p = 1.5f; });
  expect_bad([](SamplingParams& p) { p.repeat_penalty = 0.0f; });
  expect_bad([](SamplingParams& p) { p.repeat_last_n = -2; });
  EXPECT_NO_THROW(ValidateSamplingParams(SamplingParams{}));
  EXPECT_NO_THROW(ValidateSamplingParams(NoFilters(0.0f)));
}

TEST(Sampling, GreedyPicksFirstMaximum) {
  Sampler s(NoFilters(0.0f), 5);
  std::vector<float> logits = {0.1f, 3.0f, -1.0f, 3.0f, 2.0f};
  EXPECT_EQ(s.Sample(logits.data(), {}), 1);
  EXPECT_TRUE(s.Candidates(logits.data()).empty());
}

TEST(Sampling, SameSeedSameTokensDifferentSeedDifferentTokens) {
  std::vector<float> base(100);
  for (size_t i = 0; i < base.size(); ++i) base[i] = std::sin(static_cast<float>(i)) * 2.0f;
  auto draw = [&](uint64_t seed) {
    SamplingParams p = NoFilters(1.0f);
    p.seed = seed;
    Sampler s(p, base.size());
    std::vector<int32_t> out;
    for (int i = 0; i < 64; ++i) {
      std::vector<float> l = base;
      out.push_back(s.Sample(l.data(), out));
    }
    return out;
  };
  EXPECT_EQ(draw(42), draw(42));
  EXPECT_NE(draw(42), draw(43));
}

TEST(Sampling, TopKKeepsTheKLargest) {
  SamplingParams p = NoFilters();
  p.top_k = 3;
  Sampler s(p, 10);
  std::vector<float> logits = {0, 9, 1, 8, 2, 7, 3, 6, 4, 5};
  auto c = s.Candidates(logits.data());
  ASSERT_EQ(c.size(), 3u);
  EXPECT_EQ(c[0].id, 1);
  EXPECT_EQ(c[1].id, 3);
  EXPECT_EQ(c[2].id, 5);
  const double z = std::exp(9.0) + std::exp(8.0) + std::exp(7.0);
  EXPECT_NEAR(c[0].p, std::exp(9.0) / z, 1e-6);
  EXPECT_NEAR(c[2].p, std::exp(7.0) / z, 1e-6);
}

TEST(Sampling, TopPKeepsSmallestPrefixReachingP) {
  const std::vector<float> logits = LogProbs({0.05f, 0.5f, 0.15f, 0.3f});
  SamplingParams p = NoFilters();
  p.top_p = 0.75f;
  {
    Sampler s(p, 4);
    auto c = s.Candidates(logits.data());
    ASSERT_EQ(c.size(), 2u);
    EXPECT_EQ(c[0].id, 1);
    EXPECT_EQ(c[1].id, 3);
    EXPECT_NEAR(c[0].p, 0.5 / 0.8, 1e-5);  // renormalised
  }
  p.top_p = 0.85f;
  {
    Sampler s(p, 4);
    EXPECT_EQ(s.Candidates(logits.data()).size(), 3u);
  }
  p.top_p = 0.1f;  // always at least one token
  {
    Sampler s(p, 4);
    auto c = s.Candidates(logits.data());
    ASSERT_EQ(c.size(), 1u);
    EXPECT_EQ(c[0].id, 1);
  }
}

TEST(Sampling, MinPDropsTokensBelowFractionOfMax) {
  const std::vector<float> logits = LogProbs({0.05f, 0.5f, 0.15f, 0.3f});
  SamplingParams p = NoFilters();
  p.min_p = 0.2f;  // threshold 0.1: drops 0.05
  Sampler s(p, 4);
  auto c = s.Candidates(logits.data());
  ASSERT_EQ(c.size(), 3u);
  for (const TokenProb& t : c) EXPECT_NE(t.id, 0);
  p.min_p = 0.7f;  // threshold 0.35: only 0.5 stays
  Sampler s2(p, 4);
  ASSERT_EQ(s2.Candidates(logits.data()).size(), 1u);
}

TEST(Sampling, TemperatureScalesLogits) {
  const std::vector<float> logits = {1.0f, 2.0f, 3.0f};
  Sampler s(NoFilters(2.0f), 3);
  auto c = s.Candidates(logits.data());
  ASSERT_EQ(c.size(), 3u);
  const double z = std::exp(0.5) + std::exp(1.0) + std::exp(1.5);
  EXPECT_NEAR(c[0].p, std::exp(1.5) / z, 1e-6);
  EXPECT_NEAR(c[2].p, std::exp(0.5) / z, 1e-6);
}

TEST(Sampling, MaskedLogitsAreNeverDrawn) {
  Sampler s(NoFilters(1.0f), 4);
  for (int i = 0; i < 200; ++i) {
    std::vector<float> logits = {-INFINITY, 0.0f, -INFINITY, 0.0f};
    const int32_t id = s.Sample(logits.data(), {});
    EXPECT_TRUE(id == 1 || id == 3);
  }
  std::vector<float> all_masked(4, -INFINITY);
  EXPECT_THROW(s.Sample(all_masked.data(), {}), Error);
}

TEST(Sampling, DrawsFollowTheDistribution) {
  const std::vector<float> logits = LogProbs({0.5f, 0.3f, 0.2f});
  SamplingParams p = NoFilters(1.0f);
  p.seed = 7;
  Sampler s(p, 3);
  std::map<int32_t, int> counts;
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    std::vector<float> l = logits;
    ++counts[s.Sample(l.data(), {})];
  }
  EXPECT_NEAR(counts[0] / double(n), 0.5, 0.02);
  EXPECT_NEAR(counts[1] / double(n), 0.3, 0.02);
  EXPECT_NEAR(counts[2] / double(n), 0.2, 0.02);
}

TEST(Sampling, RepetitionPenaltyOncePerDistinctToken) {
  std::vector<float> logits = {2.0f, -2.0f, 1.0f, 4.0f};
  std::vector<uint8_t> seen(4, 0);
  const std::vector<int32_t> recent = {0, 1, 0, 0, 99, -1};
  ApplyRepetitionPenalty(logits.data(), 4, recent, 2.0f, seen.data());
  EXPECT_FLOAT_EQ(logits[0], 1.0f);
  EXPECT_FLOAT_EQ(logits[1], -4.0f);
  EXPECT_FLOAT_EQ(logits[2], 1.0f);
  EXPECT_FLOAT_EQ(logits[3], 4.0f);
  for (uint8_t b : seen) EXPECT_EQ(b, 0);
}

TEST(Sampling, RepetitionPenaltyLooksOnlyAtLastN) {
  SamplingParams p = NoFilters(0.0f);
  p.repeat_penalty = 10.0f;
  p.repeat_last_n = 2;
  Sampler s(p, 3);
  // Token 0 is the best, but penalised only if among the last 2 tokens.
  std::vector<float> logits = {3.0f, 2.0f, 1.0f};
  const std::vector<int32_t> old_zero = {0, 2, 2};
  EXPECT_EQ(s.Sample(logits.data(), old_zero), 0);
  logits = {3.0f, 2.0f, 1.0f};
  const std::vector<int32_t> recent_zero = {2, 2, 0};
  EXPECT_EQ(s.Sample(logits.data(), recent_zero), 1);
}

}  // namespace
}  // namespace qlm
