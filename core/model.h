// A loaded model's weights, bound by name to the slots the graph reads.
//
// Binding is the one place that knows Hugging Face tensor names and how each
// architecture uses them: the graph (core/forward.cc) sees only this struct
// of QTensor views and f32 norm vectors, the same for llama, gemma, gemma2
// and gemma3_text. Every tensor's shape is checked against the config; a
// missing tensor or a wrong shape is a qlm::Error naming it.
//
// Storage: f32 and bf16 linear weights are used in place from the mmap (the
// QTensor points into the mapping). f16 weights are converted to f32, norm
// vectors to f32 (owned buffers). A tied embedding is ONE tensor that serves
// both the per-token row lookup and the output head.
#pragma once

#include <cstddef>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/aligned_buffer.h"
#include "loaders/model_config.h"
#include "loaders/weight_store.h"
#include "quant/format.h"

namespace qlm {

class ThreadPool;

struct LayerWeights {
  QTensor wq, wk, wv, wo;                 // attention projections [out, in]
  QTensor w_gate, w_up, w_down;           // GLU feed-forward
  const float* attn_norm = nullptr;       // input_layernorm
  const float* attn_post_norm = nullptr;  // gemma2/3 post_attention_layernorm; null otherwise
  // The norm before the MLP: post_attention_layernorm in llama/gemma (HF's
  // name for it there), pre_feedforward_layernorm in gemma2/3.
  const float* ffn_norm = nullptr;
  const float* ffn_post_norm = nullptr;  // gemma2/3 post_feedforward_layernorm; null otherwise
  const float* q_norm = nullptr;         // gemma3, [head_dim]; null otherwise
  const float* k_norm = nullptr;
  bool sliding = false;     // sliding-window attention layer
  bool local_rope = false;  // gemma3 sliding layers: rope_local_base_freq, no scaling
};

struct ModelWeights {
  QTensor embed;                      // [vocab, hidden]: one row per token
  QTensor lm_head;                    // [vocab, hidden]: the same tensor as embed when tied
  const float* final_norm = nullptr;  // model.norm
  std::vector<LayerWeights> layers;
};

struct BindOptions {
  // Convert every linear weight (and the output head) to this format at load
  // time. nullopt keeps the stored format (f32/bf16 in place; f16 -> f32).
  // Round-to-nearest; q4 uses `group_size` (0 = the format's default).
  std::optional<Format> quant;
  uint32_t group_size = 0;
  // The embedding and output head in this format instead of `quant`
  // (mixed precision, like llama.cpp's --output-tensor-type); nullopt: `quant`.
  std::optional<Format> head_quant;
  // Tensors already in a kernel format, by Hugging Face name (a .qlm file's,
  // repacked GPTQ linears: core/model_source.h). Looked up before `store`;
  // used in place unless `quant` asks for another format.
  const std::map<std::string, QTensor>* prepared = nullptr;
  // Splits --quant conversions over row blocks (null: this thread).
  ThreadPool* pool = nullptr;
  // Called after each weight matrix is bound: `done` of `total`, the one just
  // bound named (for a progress bar while --quant converts).
  std::function<void(size_t done, size_t total, const std::string& name)> progress;
};

// Owns whatever binding had to convert; the views in ModelWeights point either
// into the WeightStore's mappings or into these buffers.
struct BoundWeights {
  ModelWeights w;
  std::vector<AlignedBuffer> owned;
  size_t owned_bytes = 0;
};

// Binds the tensors of `store` for `config`. Throws qlm::Error naming the
// tensor (and `source`, e.g. the model directory) for a missing tensor, a
// shape that disagrees with config.json, or an unsupported dtype.
BoundWeights BindWeights(const ModelConfig& config, const WeightStore& store,
                         const std::string& source, const BindOptions& options = {});

}  // namespace qlm
