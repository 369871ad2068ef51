// The correctness bar: every golden prompt of the four shared models, run
// through Session::Forward from position 0 on every kernel table this CPU
// supports, must match the reference logits to within
// 1e-3 + 1e-3 · max|logit|, and incremental greedy decoding must reproduce
// the reference's 24-token greedy continuation (computed there by full
// recompute).
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "core/qlm.h"
#include "golden_util.h"
#include "kernels/registry.h"

namespace qlm {
namespace {

using testing::Golden;

struct Case {
  std::string model;  // relative to QLM_SHARED_DIR
  kernels::Isa isa;
};

std::string CaseName(const ::testing::TestParamInfo<Case>& info) {
  std::string s = info.param.model.substr(info.param.model.find('/') + 1) + "_" +
                  kernels::IsaName(info.param.isa);
  for (char& ch : s) {
    if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
  }
  return s;
}

std::vector<Case> AllCases() {
  std::vector<Case> cases;
  for (const std::string& m : testing::GoldenModels()) {
    for (kernels::Isa isa :
         {kernels::Isa::kScalar, kernels::Isa::kAvx2, kernels::Isa::kAvx512, kernels::Isa::kNeon}) {
      if (kernels::IsaCompiledIn(isa)) cases.push_back({m, isa});
    }
  }
  return cases;
}

void PrintTo(const Case& c, std::ostream* os) {
  *os << c.model << " on " << kernels::IsaName(c.isa);
}

class GoldenTest : public ::testing::TestWithParam<Case> {};

TEST_P(GoldenTest, LogitsAndGreedyContinuationMatch) {
  const Case& c = GetParam();
  if (!kernels::IsaAvailable(c.isa)) {
    GTEST_SKIP() << kernels::IsaName(c.isa) << " is not supported by this CPU";
  }
  const std::string dir = testing::SharedPath(c.model);
  ASSERT_TRUE(std::filesystem::exists(dir)) << "missing test data: " << dir;
  LoadOptions lo;
  lo.kernels = kernels::IsaName(c.isa);
  const Model model = Model::Load(dir, lo);
  ASSERT_STREQ(model.isa(), kernels::IsaName(c.isa));
  const size_t vocab = static_cast<size_t>(model.config().vocab_size);

  for (const Golden& g : testing::ReadGoldens(dir)) {
    SCOPED_TRACE(g.name);
    ASSERT_EQ(g.vocab, vocab);
    SessionOptions so;
    so.context = g.ids.size() + g.greedy.size() + 1;
    Session session(model, so);
    const std::span<const float> logits = session.Forward(g.ids, /*all_logits=*/true);
    ASSERT_EQ(logits.size(), g.logits.size());
    // Per position, so a failure says where it starts to diverge.
    const float tol = 1e-3f + 1e-3f * testing::MaxAbs(g.logits.data(), g.logits.size());
    float worst = 0.0f;
    size_t worst_pos = 0;
    for (size_t p = 0; p < g.ids.size(); ++p) {
      const float d =
          testing::MaxAbsDiff(logits.data() + p * vocab, g.logits.data() + p * vocab, vocab);
      if (d > worst) worst = d, worst_pos = p;
    }
    std::printf("  %s: max |dlogit| %.3g at position %zu (tolerance %.3g)\n", g.name.c_str(), worst,
                worst_pos, tol);
    EXPECT_LE(worst, tol) << "max |Δlogit| " << worst << " at position " << worst_pos << " of "
                          << g.ids.size();

    // Greedy continuation, decoding one token at a time on the KV cache.
    std::vector<float> last(logits.end() - static_cast<std::ptrdiff_t>(vocab), logits.end());
    std::vector<int32_t> got;
    for (size_t i = 0; i < g.greedy.size(); ++i) {
      const int32_t id =
          static_cast<int32_t>(std::max_element(last.begin(), last.end()) - last.begin());
      got.push_back(id);
      if (i + 1 == g.greedy.size()) break;
      const std::span<const float> next = session.Forward(std::span<const int32_t>(&id, 1));
      last.assign(next.begin(), next.end());
    }
    EXPECT_EQ(got, g.greedy);
  }
}

INSTANTIATE_TEST_SUITE_P(AllModels, GoldenTest, ::testing::ValuesIn(AllCases()), CaseName);

// Prefill in batches and token-by-token decode compute the same thing: the
// logits of every position agree whatever the batch size (including batches
// that straddle the sliding window's ring wrap-around).
class BatchingTest : public ::testing::TestWithParam<std::string> {};

TEST_P(BatchingTest, BatchSizesAgree) {
  const std::string dir = testing::SharedPath(GetParam());
  ASSERT_TRUE(std::filesystem::exists(dir)) << "missing test data: " << dir;
  const Model model = Model::Load(dir);
  const size_t vocab = static_cast<size_t>(model.config().vocab_size);
  std::vector<Golden> goldens = testing::ReadGoldens(dir);
  // The longest prompt: the one that wraps the sliding windows most.
  const Golden& g = *std::max_element(goldens.begin(), goldens.end(),
                                      [](auto& a, auto& b) { return a.ids.size() < b.ids.size(); });
  auto run = [&](size_t batch, size_t step) {
    SessionOptions so;
    so.batch = batch;
    so.context = g.ids.size();
    Session s(model, so);
    std::vector<float> all;
    for (size_t i = 0; i < g.ids.size(); i += step) {
      const size_t n = std::min(step, g.ids.size() - i);
      const auto l = s.Forward(std::span<const int32_t>(g.ids).subspan(i, n), true);
      all.insert(all.end(), l.begin(), l.end());
    }
    return all;
  };
  const std::vector<float> one_by_one = run(1, 1);
  const float tol = 1e-4f + 1e-5f * testing::MaxAbs(one_by_one.data(), one_by_one.size());
  for (auto [batch, step] : std::vector<std::pair<size_t, size_t>>{
           {64, g.ids.size()}, {7, g.ids.size()}, {5, 13}, {200, g.ids.size()}}) {
    const std::vector<float> batched = run(batch, step);
    ASSERT_EQ(batched.size(), one_by_one.size());
    EXPECT_LE(testing::MaxAbsDiff(batched.data(), one_by_one.data(), batched.size()), tol)
        << "batch " << batch << ", Forward calls of " << step << " tokens";
  }
  (void)vocab;
}

INSTANTIATE_TEST_SUITE_P(AllModels, BatchingTest, ::testing::ValuesIn(testing::GoldenModels()),
                         [](const auto& info) {
                           std::string s = info.param.substr(info.param.find('/') + 1);
                           for (char& ch : s) {
                             if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           }
                           return s;
                         });

}  // namespace
}  // namespace qlm
