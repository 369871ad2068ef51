// The transformer graph: one function that runs a batch of tokens through
// every layer of a llama / gemma / gemma2 / gemma3_text model, the
// architectures differing only in config flags (see core/forward.cc).
//
// Prefill passes many tokens per call (M > 1 matmuls); decode passes one.
// Activations are f32 in scratch buffers allocated once per session; the hot
// path allocates nothing and calls compute only through the kernel table.
#pragma once

#include <cstddef>
#include <cstdint>

#include "base/aligned_buffer.h"
#include "core/kv_cache.h"
#include "core/model.h"
#include "core/rope.h"
#include "kernels/registry.h"
#include "loaders/model_config.h"

namespace qlm {

class ThreadPool;

// Calibration hook (GPTQ, core/gptq_model.h): sees the input of every
// linear before its matmul. Null in normal runs; costs one branch per linear.
enum class LinearInput : uint8_t {
  kAttention,     // q/k/v_proj input: attn_norm(x), [n, hidden]
  kAttentionOut,  // o_proj input: the attention output, [n, heads · head_dim]
  kMlp,           // gate/up_proj input: ffn_norm(x), [n, hidden]
  kMlpDown,       // down_proj input: act(gate) ⊙ up, [n, intermediate]
  kHead,          // lm_head input: final_norm(x), [rows, hidden] (layer = num_layers)
};

class ForwardObserver {
 public:
  virtual ~ForwardObserver() = default;
  virtual void OnLinearInput(size_t layer, LinearInput which, const float* x, size_t rows,
                             size_t cols) = 0;
  // ForwardBatch returns right after this layer (its output is all a
  // calibration pass needs); SIZE_MAX runs every layer.
  size_t last_layer = SIZE_MAX;
};

// Wall time of the linears, per shape: for decode steps (one-token batches)
// where a token's time goes and how close each matmul streams to the memory
// bandwidth, for prefill batches their share and GFLOP/s (`qlm bench
// --profile`). Filled only while ForwardScratch::profile (decode) or
// prefill_profile is set; costs two clock reads per parallel loop then, one
// branch otherwise.
// A fixed table, so recording never allocates. The time of a loop includes
// its activation quantization (int8-activation path) and, for gate + up, the
// GLU applied on the way out.
struct LinearProfileEntry {
  uint64_t rows = 0;  // output rows of the loop (q/k/v together, gate + up together)
  uint64_t cols = 0;  // inputs (K)
  Format format = Format::kF32;
  uint64_t calls = 0;     // parallel loops timed
  uint64_t act_rows = 0;  // activation rows (tokens) over those loops
  uint64_t ns = 0;        // their wall time
  uint64_t bytes = 0;     // weight bytes they read (data, scales, zeros)
};

struct LinearProfile {
  static constexpr size_t kMaxEntries = 16;
  LinearProfileEntry entries[kMaxEntries];
  size_t size = 0;
  // Loops of shapes beyond kMaxEntries, summed (none for the supported
  // architectures: five shapes per model).
  LinearProfileEntry other;

  void Add(uint64_t rows, uint64_t cols, Format format, uint64_t act_rows, uint64_t ns,
           uint64_t bytes);
  void Clear() { *this = LinearProfile{}; }
};

// Everything the graph reads that does not change while a model is loaded.
struct Transformer {
  const ModelConfig* config = nullptr;
  const ModelWeights* weights = nullptr;
  const kernels::KernelTable* kernels = nullptr;
  RopeFreqs rope_global;                // rope_theta + rope_scaling
  RopeFreqs rope_local;                 // gemma3 sliding layers: rope_local_base_freq, unscaled
  float embed_scale = 1.0f;             // sqrt(hidden_size) for the gemma family, else 1
  ForwardObserver* observer = nullptr;  // calibration only
  // Weight formats whose matmuls multiply int8-quantized activations
  // (quantize_acts + matmul_q8, as llama.cpp does; only int8 and q4 have
  // such kernels): 2-3x faster than f32 activations, at the cost of
  // rounding activations to 8 bits per block of 32 (64 for q4 prefill,
  // kernels::Q8ActBlockFor). MakeTransformer sets it
  // from QLM_ACTIVATIONS: unset = q4 only; "int8" = int8 and q4; "f32" =
  // none (exact products of the dequantized weights). int8 weights stay on
  // f32 activations by default: on the Austen model the int8 path raised
  // the int8 model's KL divergence from 2.1e-5 to 5.2e-5 and dropped top-1
  // agreement from 99.53 % to 99.19 % (valid.txt, 40 windows), while for q4
  // it adds under 1 % to the KL divergence q4 itself causes.
  bool int8_activations[kNumFormats] = {};
};

Transformer MakeTransformer(const ModelConfig& config, const ModelWeights& weights,
                            const kernels::KernelTable& kernels);

// Activation buffers for batches of up to max_batch tokens.
class ForwardScratch {
 public:
  ForwardScratch() = default;
  ForwardScratch(const ModelConfig& config, size_t max_batch);

  size_t max_batch = 0;
  float* x = nullptr;     // [B, hidden]  the residual stream
  float* xn = nullptr;    // [B, hidden]  normalised input of a sub-block
  float* q = nullptr;     // [B, heads · head_dim]
  float* k = nullptr;     // [B, kv_heads · head_dim]
  float* v = nullptr;     // [B, kv_heads · head_dim]
  float* att = nullptr;   // [B, heads · head_dim]  attention output
  float* proj = nullptr;  // [B, hidden]  output of o_proj / down_proj
  float* gate = nullptr;  // [B, intermediate]
  float* up = nullptr;    // [B, intermediate]
  float *cos_global = nullptr, *sin_global = nullptr;  // [B, head_dim / 2]
  float *cos_local = nullptr, *sin_local = nullptr;
  // The int8 copy of one linear input (kernels::Q8Acts layout) for the
  // int8-activation matmuls, [B, K padded to 64] for K up to q8_max_k.
  int8_t* q8_codes = nullptr;
  float* q8_scales = nullptr;
  int32_t* q8_sums = nullptr;
  size_t q8_max_k = 0;
  LinearProfile* profile = nullptr;          // one-token batches add to it; null = not timed
  LinearProfile* prefill_profile = nullptr;  // batches of several tokens; null = not timed
  size_t bytes() const { return storage_.size(); }

 private:
  AlignedBuffer storage_;
};

// Runs tokens[0..n) (n <= s.max_batch) at positions pos0, pos0 + 1, ...
// appending their keys and values to kv (the caller checks the context).
// If logits is non-null, writes the logits of rows [first_out, n) to
// logits[(i - first_out) · vocab ...]. pool may be null (single thread).
void ForwardBatch(const Transformer& m, KvCache& kv, ForwardScratch& s, ThreadPool* pool,
                  const int32_t* tokens, size_t n, int32_t pos0, float* logits, size_t first_out);

}  // namespace qlm
