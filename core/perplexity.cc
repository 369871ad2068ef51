#include "core/perplexity.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "base/error.h"

namespace qlm {

void LogSoftmax(const float* logits, size_t n, double* out) {
  double mx = -INFINITY;
  for (size_t i = 0; i < n; ++i) mx = std::max(mx, static_cast<double>(logits[i]));
  double sum = 0;
  for (size_t i = 0; i < n; ++i) sum += std::exp(static_cast<double>(logits[i]) - mx);
  const double lse = mx + std::log(sum);
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<double>(logits[i]) - lse;
}

double KlDivergence(const double* log_p, const double* log_q, size_t n) {
  double kl = 0;
  for (size_t i = 0; i < n; ++i) {
    const double p = std::exp(log_p[i]);
    if (p > 0) kl += p * (log_p[i] - log_q[i]);
  }
  return std::max(kl, 0.0);  // rounding can leave a tiny negative for equal inputs
}

double Quantile(std::vector<double>& values, double q) {
  if (values.empty()) throw Error("Quantile of no values");
  std::sort(values.begin(), values.end());
  const double pos = q * static_cast<double>(values.size() - 1);
  const auto lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, values.size() - 1);
  const double frac = pos - static_cast<double>(lo);
  return values[lo] + (values[hi] - values[lo]) * frac;
}

namespace {

size_t ArgMax(const float* x, size_t n) {
  return static_cast<size_t>(std::max_element(x, x + n) - x);
}

}  // namespace

PerplexityResult EvaluatePerplexity(const Model& model, const Model* base,
                                    std::span<const int32_t> ids, const PerplexityOptions& o,
                                    const PerplexityProgress& progress) {
  const size_t ctx = o.context;
  if (ctx < 4) throw UsageError("perplexity context must be at least 4 tokens");
  const size_t vocab = static_cast<size_t>(model.config().vocab_size);
  if (base != nullptr) {
    if (static_cast<size_t>(base->config().vocab_size) != vocab) {
      throw UsageError("the base model's vocabulary (" + std::to_string(base->config().vocab_size) +
                       ") differs from the model's (" + std::to_string(vocab) + ")");
    }
    if (base->tokenizer().serialized_proto() != model.tokenizer().serialized_proto()) {
      throw UsageError(
          "the base model has a different tokenizer: KL divergence needs the same one");
    }
  }
  size_t windows = ids.size() / ctx;
  if (windows == 0) {
    throw UsageError("the text has " + std::to_string(ids.size()) +
                     " tokens, fewer than one window of " + std::to_string(ctx) +
                     " (lower -c/--ctx-size)");
  }
  if (o.max_windows > 0) windows = std::min(windows, o.max_windows);
  const int bos = model.tokenizer().bos_id();

  SessionOptions so;
  so.context = ctx;
  so.batch = std::min(o.batch, ctx);
  so.threads = o.threads;
  std::optional<Session> base_session;
  if (base != nullptr) base_session.emplace(*base, so);  // f32 KV: the reference
  so.kv_type = o.kv_type;
  Session session(model, so);

  const size_t first = ctx / 2;
  std::vector<double> lp(vocab), lq(vocab), klds;
  double nll_sum = 0, base_nll_sum = 0;
  size_t scored = 0, agree = 0;
  PerplexityResult r;
  for (size_t w = 0; w < windows; ++w) {
    std::vector<int32_t> window(ids.begin() + static_cast<ptrdiff_t>(w * ctx),
                                ids.begin() + static_cast<ptrdiff_t>((w + 1) * ctx));
    if (bos >= 0) window[0] = bos;
    // The first half only fills the KV cache; logits are computed for the
    // scored half alone (row i is position first + i).
    const std::span<const int32_t> head(window.data(), first),
        tail(window.data() + first, ctx - first);
    const auto eval = [&](Session& s) {
      s.Reset();
      s.Forward(head);
      return s.Forward(tail, /*all_logits=*/true);
    };
    const std::span<const float> logits = eval(session);
    std::span<const float> base_logits;
    if (base_session) base_logits = eval(*base_session);
    for (size_t j = first; j + 1 < ctx; ++j) {
      const int32_t next = window[j + 1];
      const float* row = logits.data() + (j - first) * vocab;
      LogSoftmax(row, vocab, lq.data());
      nll_sum -= lq[static_cast<size_t>(next)];
      if (base_session) {
        const float* brow = base_logits.data() + (j - first) * vocab;
        LogSoftmax(brow, vocab, lp.data());
        base_nll_sum -= lp[static_cast<size_t>(next)];
        klds.push_back(KlDivergence(lp.data(), lq.data(), vocab));
        agree += ArgMax(row, vocab) == ArgMax(brow, vocab) ? 1 : 0;
      }
      ++scored;
    }
    if (progress) progress(w + 1, windows, std::exp(nll_sum / static_cast<double>(scored)));
  }
  r.windows = windows;
  r.tokens = scored;
  r.nll_mean = nll_sum / static_cast<double>(scored);
  r.ppl = std::exp(r.nll_mean);
  if (base_session) {
    double s = 0;
    for (const double k : klds) s += k;
    r.kld_mean = s / static_cast<double>(klds.size());
    r.top1_agreement = static_cast<double>(agree) / static_cast<double>(scored);
    r.base_ppl = std::exp(base_nll_sum / static_cast<double>(scored));
    r.kld_p99 = Quantile(klds, 0.99);
  }
  return r;
}

}  // namespace qlm
