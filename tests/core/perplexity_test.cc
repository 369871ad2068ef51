// Perplexity and KL divergence: the per-position statistics, and the window
// evaluation on a tiny fixture model against a direct computation.
#include "core/perplexity.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "base/error.h"
#include "core/qlm.h"

namespace qlm {
namespace {

std::string Shared(const std::string& rel) { return std::string(QLM_SHARED_DIR) + "/" + rel; }

#define QLM_REQUIRE_SHARED(path)             \
  ASSERT_TRUE(std::filesystem::exists(path)) \
      << "missing test data: " << (path) << " (QLM_SHARED_DIR=" << QLM_SHARED_DIR << ")"

TEST(PerplexityStats, LogSoftmaxKlAndQuantile) {
  const float logits[4] = {1.0f, 2.0f, 3.0f, -1.0f};
  double lp[4];
  LogSoftmax(logits, 4, lp);
  double sum = 0;
  for (double v : lp) sum += std::exp(v);
  EXPECT_NEAR(sum, 1.0, 1e-12);
  EXPECT_NEAR(lp[2] - lp[1], 1.0, 1e-12);
  EXPECT_EQ(KlDivergence(lp, lp, 4), 0.0);
  // KL(p‖q) by hand for two two-point distributions.
  const double p[2] = {std::log(0.25), std::log(0.75)}, q[2] = {std::log(0.5), std::log(0.5)};
  EXPECT_NEAR(KlDivergence(p, q, 2), 0.25 * std::log(0.5) + 0.75 * std::log(1.5), 1e-12);
  std::vector<double> v = {5, 1, 4, 2, 3};
  EXPECT_DOUBLE_EQ(Quantile(v, 0.5), 3.0);
  EXPECT_DOUBLE_EQ(Quantile(v, 0.99), 4.96);  // 4 + 0.96 · (5 − 4)
  EXPECT_DOUBLE_EQ(Quantile(v, 0.0), 1.0);
  std::vector<double> none;
  EXPECT_THROW(Quantile(none, 0.5), Error);
}

TEST(Perplexity, WindowsMatchDirectComputation) {
  const std::string dir = Shared("fixtures/tiny-llama");
  QLM_REQUIRE_SHARED(dir);
  const Model model = Model::Load(dir);
  std::vector<int32_t> ids = {model.tokenizer().bos_id()};
  for (int i = 0; i < 70; ++i) ids.push_back(10 + (i * 37) % 500);
  PerplexityOptions o;
  o.context = 16;
  o.batch = 5;  // several batches per half-window
  const PerplexityResult r = EvaluatePerplexity(model, nullptr, ids, o);
  EXPECT_EQ(r.windows, 4u);                // 71 / 16
  EXPECT_EQ(r.tokens, 4u * (16 - 8 - 1));  // positions 8..14 predict 9..15
  EXPECT_FALSE(r.kld_mean.has_value());

  // The same numbers from whole windows, all logits at once.
  SessionOptions so;
  so.context = 16;
  Session s(model, so);
  const size_t vocab = static_cast<size_t>(model.config().vocab_size);
  std::vector<double> lq(vocab);
  double nll = 0;
  for (size_t w = 0; w < 4; ++w) {
    std::vector<int32_t> win(ids.begin() + w * 16, ids.begin() + (w + 1) * 16);
    win[0] = model.tokenizer().bos_id();
    s.Reset();
    const std::span<const float> logits = s.Forward(win, true);
    for (size_t j = 8; j < 15; ++j) {
      LogSoftmax(logits.data() + j * vocab, vocab, lq.data());
      nll -= lq[static_cast<size_t>(win[j + 1])];
    }
  }
  EXPECT_NEAR(r.ppl, std::exp(nll / 28.0), 1e-4 * r.ppl);

  // Against itself: no divergence, full agreement.
  const PerplexityResult self = EvaluatePerplexity(model, &model, ids, o);
  EXPECT_NEAR(*self.kld_mean, 0.0, 1e-9);
  EXPECT_NEAR(*self.kld_p99, 0.0, 1e-9);
  EXPECT_EQ(*self.top1_agreement, 1.0);
  EXPECT_NEAR(self.base_ppl, r.ppl, 1e-9);

  // Against an int8 copy: a small positive divergence.
  LoadOptions lo;
  lo.quant = Format::kInt8;
  const Model int8 = Model::Load(dir, lo);
  const PerplexityResult q = EvaluatePerplexity(int8, &model, ids, o);
  EXPECT_GT(*q.kld_mean, 0.0);
  EXPECT_LT(*q.kld_mean, 0.05);
  EXPECT_GE(*q.kld_p99, *q.kld_mean);

  o.max_windows = 2;
  EXPECT_EQ(EvaluatePerplexity(model, nullptr, ids, o).windows, 2u);
  o.context = 100;
  EXPECT_THROW(EvaluatePerplexity(model, nullptr, ids, o), UsageError);
}

TEST(Perplexity, OtherModelWithTheSameTokenizer) {
  const std::string a = Shared("fixtures/tiny-llama"), b = Shared("models/austen-gemma3");
  QLM_REQUIRE_SHARED(a);
  QLM_REQUIRE_SHARED(b);
  const Model ma = Model::Load(a), mb = Model::Load(b);
  // Same tokenizer and vocabulary size: accepted, even though the models
  // differ (the KL divergence is then large).
  std::vector<int32_t> ids(40, 100);
  PerplexityOptions o;
  o.context = 8;
  o.max_windows = 1;
  const PerplexityResult r = EvaluatePerplexity(ma, &mb, ids, o);
  EXPECT_GT(*r.kld_mean, 0.0);
}

}  // namespace
}  // namespace qlm
