// Perplexity and KL divergence of a model over a text, as llama.cpp's
// `perplexity` computes them: the tokenized text (BOS first) is cut into
// non-overlapping windows of `context` tokens; each window is evaluated from
// an empty KV cache with its first token replaced by BOS, and only the
// second half is scored (positions context/2 .. context−2 predict the next
// token), so every scored token sees at least context/2 tokens of history.
//
// Against a base model (same tokenizer) it also reports, over the same
// scored positions, the KL divergence KL(base ‖ model) = Σ p_base ·
// (log p_base − log p_model) of the next-token distributions (mean and 99th
// percentile) and how often both models' most likely token agree.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <vector>

#include "core/qlm.h"

namespace qlm {

struct PerplexityOptions {
  size_t context = 512;           // window length in tokens (>= 4)
  size_t batch = 512;             // forward batch
  size_t threads = 1;             // per model session; 0 = physical cores
  size_t max_windows = 0;         // 0 = every full window of the text
  KvType kv_type = KvType::kF32;  // the model's KV cache; the base always uses f32
};

struct PerplexityResult {
  size_t windows = 0;
  size_t tokens = 0;  // scored tokens
  double ppl = 0;     // exp(mean negative log-likelihood)
  double nll_mean = 0;
  // Only with a base model:
  std::optional<double> kld_mean, kld_p99, top1_agreement;
  double base_ppl = 0;
};

// Called after each window with (windows done, windows total, running ppl).
using PerplexityProgress = std::function<void(size_t, size_t, double)>;

// Scores `ids` (the whole text tokenized, BOS first). `base` may be null.
// Throws qlm::UsageError if the text is shorter than one window, or if the
// models' tokenizers or vocabularies differ.
PerplexityResult EvaluatePerplexity(const Model& model, const Model* base,
                                    std::span<const int32_t> ids, const PerplexityOptions& options,
                                    const PerplexityProgress& progress = {});

// ---- The per-position statistics (exposed for tests). ----

// log-softmax of logits[0..n) into out (double precision).
void LogSoftmax(const float* logits, size_t n, double* out);
// KL(p ‖ q) from log-probabilities.
double KlDivergence(const double* log_p, const double* log_q, size_t n);
// The q-quantile (0..1) of `values` with linear interpolation between order
// statistics (numpy's default). Sorts `values`. Throws if empty.
double Quantile(std::vector<double>& values, double q);

}  // namespace qlm
