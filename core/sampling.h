// Choosing the next token from logits: repetition penalty, then greedy
// (temperature 0) or temperature → top-k → top-p → min-p → a seeded draw.
// The order of the filters is Hugging Face's (generation/logits_process.py);
// the repetition penalty is the CTRL rule both HF and llama.cpp use.
#pragma once

#include <cstddef>
#include <cstdint>
#include <random>
#include <span>
#include <vector>

namespace qlm {

struct SamplingParams {
  float temperature = 0.8f;     // 0 = greedy (argmax)
  int top_k = 40;               // 0 = off
  float top_p = 0.95f;          // 1 = off; must be in (0, 1]
  float min_p = 0.05f;          // 0 = off; must be in [0, 1]
  float repeat_penalty = 1.0f;  // 1 = off; must be > 0
  int repeat_last_n = 64;       // tokens the penalty looks back over; -1 = all, 0 = off
  uint64_t seed = 0;
};

// Throws qlm::UsageError naming the parameter for a value out of range.
void ValidateSamplingParams(const SamplingParams& p);

// Divides positive logits by `penalty` and multiplies negative ones by it,
// once per distinct token in `recent` (ids outside [0, n) are ignored).
// seen: n bytes of zeros, scratch; left zero on return.
void ApplyRepetitionPenalty(float* logits, size_t n, std::span<const int32_t> recent, float penalty,
                            uint8_t* seen);

struct TokenProb {
  int32_t id;
  float p;
};

class Sampler {
 public:
  Sampler(const SamplingParams& params, size_t vocab_size);

  const SamplingParams& params() const { return params_; }

  // Picks a token from logits[vocab] (modified in place by the penalty):
  // Penalize() then Pick().
  int32_t Sample(float* logits, std::span<const int32_t> history);
  // The repetition penalty over the last repeat_last_n tokens of `history`.
  void Penalize(float* logits, std::span<const int32_t> history);
  // Greedy argmax (temperature 0) or a draw from Candidates(); -inf logits
  // are never picked (greedy throws if every logit is -inf).
  int32_t Pick(const float* logits);

  // The candidates the filters keep for these (already penalised) logits,
  // probabilities renormalised, most likely first. Empty for temperature 0.
  // Exposed for tests; Sample() draws from exactly this list.
  std::span<const TokenProb> Candidates(const float* logits);

 private:
  SamplingParams params_;
  size_t vocab_;
  std::mt19937_64 rng_;
  std::vector<TokenProb> cand_;  // scratch, vocab entries, allocated once
  std::vector<uint8_t> seen_;    // scratch for the penalty, vocab zeros
};

}  // namespace qlm
