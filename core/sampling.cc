#include "core/sampling.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "base/error.h"

namespace qlm {

void ValidateSamplingParams(const SamplingParams& p) {
  auto bad = [](const std::string& what) { throw UsageError(what); };
  if (!(p.temperature >= 0.0f) || !std::isfinite(p.temperature)) {
    bad("--temp must be >= 0 (0 = greedy), got " + std::to_string(p.temperature));
  }
  if (p.top_k < 0) bad("--top-k must be >= 0 (0 = off), got " + std::to_string(p.top_k));
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) {
    bad("--top-p must be in (0, 1] (1 = off), got " + std::to_string(p.top_p));
  }
  if (!(p.min_p >= 0.0f && p.min_p <= 1.0f)) {
    bad("--min-p must be in [0, 1] (0 = off), got " + std::to_string(p.min_p));
  }
  if (!(p.repeat_penalty > 0.0f) || !std::isfinite(p.repeat_penalty)) {
    bad("--repeat-penalty must be > 0 (1 = off), got " + std::to_string(p.repeat_penalty));
  }
  if (p.repeat_last_n < -1) {
    bad("--repeat-last-n must be >= -1 (-1 = whole context, 0 = off), got " +
        std::to_string(p.repeat_last_n));
  }
}

void ApplyRepetitionPenalty(float* logits, size_t n, std::span<const int32_t> recent, float penalty,
                            uint8_t* seen) {
  if (penalty == 1.0f) return;
  for (const int32_t id : recent) {
    if (id < 0 || static_cast<size_t>(id) >= n || seen[id]) continue;
    seen[id] = 1;  // each distinct token is penalised once
    float& l = logits[id];
    l = l > 0.0f ? l / penalty : l * penalty;
  }
  for (const int32_t id : recent) {
    if (id >= 0 && static_cast<size_t>(id) < n) seen[id] = 0;
  }
}

Sampler::Sampler(const SamplingParams& params, size_t vocab_size)
    : params_(params), vocab_(vocab_size), rng_(params.seed) {
  ValidateSamplingParams(params_);
  cand_.reserve(vocab_);
  seen_.assign(vocab_, 0);
}

std::span<const TokenProb> Sampler::Candidates(const float* logits) {
  cand_.clear();
  if (params_.temperature == 0.0f) return {};
  const float inv_t = 1.0f / params_.temperature;
  for (size_t i = 0; i < vocab_; ++i) {
    const float l = logits[i];
    if (l == -std::numeric_limits<float>::infinity() || std::isnan(l)) continue;  // masked
    cand_.push_back({static_cast<int32_t>(i), l * inv_t});
  }
  if (cand_.empty()) throw Error("sampling: every token is masked out (all logits -inf)");
  auto by_logit = [](const TokenProb& a, const TokenProb& b) {
    return a.p > b.p || (a.p == b.p && a.id < b.id);
  };
  // top-k: keep the k largest (partial sort keeps this O(V log k)).
  size_t keep = cand_.size();
  if (params_.top_k > 0 && static_cast<size_t>(params_.top_k) < keep) {
    keep = static_cast<size_t>(params_.top_k);
    std::partial_sort(cand_.begin(), cand_.begin() + keep, cand_.end(), by_logit);
    cand_.resize(keep);
  } else {
    std::sort(cand_.begin(), cand_.end(), by_logit);
  }
  // Softmax over the survivors (sorted: the first is the max).
  const float max_l = cand_[0].p;
  double sum = 0.0;
  for (TokenProb& c : cand_) {
    c.p = std::exp(c.p - max_l);
    sum += c.p;
  }
  for (TokenProb& c : cand_) c.p = static_cast<float>(c.p / sum);
  // top-p: the smallest prefix whose mass reaches top_p (at least one token).
  if (params_.top_p < 1.0f) {
    double cum = 0.0;
    size_t n = 0;
    while (n < cand_.size()) {
      cum += cand_[n].p;
      ++n;
      if (cum >= params_.top_p) break;
    }
    cand_.resize(n);
  }
  // min-p: drop tokens less likely than min_p × the most likely one.
  if (params_.min_p > 0.0f) {
    const float threshold = params_.min_p * cand_[0].p;
    size_t n = 1;
    while (n < cand_.size() && cand_[n].p >= threshold) ++n;
    cand_.resize(n);
  }
  double kept = 0.0;
  for (const TokenProb& c : cand_) kept += c.p;
  for (TokenProb& c : cand_) c.p = static_cast<float>(c.p / kept);
  return cand_;
}

void Sampler::Penalize(float* logits, std::span<const int32_t> history) {
  if (params_.repeat_last_n == 0 || params_.repeat_penalty == 1.0f) return;
  size_t n = history.size();
  if (params_.repeat_last_n > 0) n = std::min(n, static_cast<size_t>(params_.repeat_last_n));
  ApplyRepetitionPenalty(logits, vocab_, history.subspan(history.size() - n),
                         params_.repeat_penalty, seen_.data());
}

int32_t Sampler::Sample(float* logits, std::span<const int32_t> history) {
  Penalize(logits, history);
  return Pick(logits);
}

int32_t Sampler::Pick(const float* logits) {
  if (params_.temperature == 0.0f) {
    // Greedy: the first index of the maximum, like torch.argmax.
    size_t best = 0;
    for (size_t i = 1; i < vocab_; ++i) {
      if (logits[i] > logits[best]) best = i;
    }
    if (logits[best] == -std::numeric_limits<float>::infinity()) {
      throw Error("sampling: every token is masked out (all logits -inf)");
    }
    return static_cast<int32_t>(best);
  }
  const std::span<const TokenProb> cands = Candidates(logits);
  // A uniform double in [0, 1) from the top 53 bits: the same on every
  // platform (std::uniform_real_distribution is implementation-defined).
  const double u = static_cast<double>(rng_() >> 11) * 0x1.0p-53;
  double cum = 0.0;
  for (const TokenProb& c : cands) {
    cum += c.p;
    if (u < cum) return c.id;
  }
  return cands.back().id;  // rounding left u just above the total
}

}  // namespace qlm
