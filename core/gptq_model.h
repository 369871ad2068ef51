// GPTQ over a whole model, layer by layer, with the engine's own forward
// pass (core/forward.h) and kernels:
//
//   for each layer l:
//     run every calibration window through the model — layers < l already
//     quantized, so their outputs are what the quantized model computes —
//     and accumulate H = 2/n·Σxxᵀ for layer l's four linear inputs (the
//     attention input shared by q/k/v, o_proj's input, the MLP input shared
//     by gate/up, down_proj's input); the pass stops after layer l
//     quantize layer l's seven linears with GPTQ (core/gptq_solver.h; q4
//     or sfp8, GptqOptions::format) and swap them into the model
//
//   finally (with `head`), one more pass over the fully quantized layers
//   collects H of the output head's input, final_norm(x), and the head is
//   quantized with GPTQ too. On Gemma the head is tied to the embedding, so
//   the same q4 table then also serves the per-token lookup (measured on the
//   Austen model: the head dominates q4's KL divergence, and the GPTQ'd
//   table is also the better embedding; docs/quantization.md).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/gptq_solver.h"
#include "core/model.h"
#include "core/tokenizer.h"
#include "kernels/registry.h"
#include "loaders/model_config.h"

namespace qlm {

class ThreadPool;

struct CalibrationOptions {
  size_t sequences = 128;  // windows
  size_t tokens = 256;     // tokens per window (BOS first)
  uint64_t seed = 1234;    // picks the windows' offsets in the text
};

// `sequences` windows of `tokens` tokens from the tokenized text at
// deterministic pseudo-random offsets, each starting with BOS. Throws
// qlm::UsageError if the text is shorter than one window.
std::vector<std::vector<int32_t>> SampleCalibrationWindows(const Tokenizer& tokenizer,
                                                           std::string_view text,
                                                           const CalibrationOptions& options);

// The Hugging Face name of layer l's linear `slot` (0..6: q, k, v, o,
// gate, up, down), e.g. "model.layers.3.mlp.down_proj.weight".
std::string LayerLinearName(size_t layer, int slot);
inline constexpr int kLinearsPerLayer = 7;

struct GptqProgressInfo {
  std::string tensor;  // just quantized
  size_t done = 0, total = 0;
  double seconds = 0;  // since the start
  GptqStats stats;
};
using GptqProgress = std::function<void(const GptqProgressInfo&)>;

// Runs GPTQ on every layer linear of `weights` (any formats the table can
// multiply; the originals are decoded with DequantizeRow, so pass f32 for a
// faithful start) and, with `head`, on the output head
// ("model.embed_tokens.weight" when tied, else "lm_head.weight"). Returns
// the quantized tensors (options.format: q4 or sfp8) by Hugging Face name.
std::map<std::string, QuantizedTensor> GptqQuantizeModel(
    const ModelConfig& config, const ModelWeights& weights, const kernels::KernelTable& table,
    const std::vector<std::vector<int32_t>>& windows, const GptqOptions& options, bool head,
    ThreadPool* pool, const GptqProgress& progress = {});

}  // namespace qlm
