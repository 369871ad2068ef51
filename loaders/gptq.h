// AutoGPTQ checkpoints: reading their quantization settings and repacking a
// 4-bit GPTQ linear into qlm's q4 layout WITHOUT dequantizing.
//
// AutoGPTQ's on-disk layout of a linear with K inputs and N outputs (the
// transpose of qlm's [rows = N, cols = K]):
//   qweight  I32 [K/8, N]   8 codes of consecutive inputs k per int32, low nibble first
//   qzeros   I32 [Kg, N/8]  8 zero points of consecutive outputs per int32, low nibble first
//   scales   F16 [Kg, N]    one scale per (group, output)
//   g_idx    I32 [K]        the group of each input (absent: k / group_size)
// with Kg = ceil(K / group_size) groups. The weight is
//   w[n][k] = scales[g][n] · (q[k][n] − z[g][n]),  g = g_idx[k],
// where z is the stored zero point plus one for checkpoint_format "gptq"
// (AutoGPTQ v1 stores zeros minus one) and the stored value for "gptq_v2".
//
// Repacking sorts the inputs by g_idx once (stably) into a permutation, so
// that qlm's stored group g holds exactly the inputs with g_idx = g, and
// copies codes, scales and zero points bit for bit: DequantizeRow of the
// result equals the formula above exactly. docs/formats.md describes q4.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "loaders/weight_store.h"
#include "quant/format.h"

namespace qlm {

struct GptqConfig {
  uint32_t group_size = 128;  // 32, 64 or 128 (qlm's q4 group sizes)
  bool sym = true;            // informational: zero points are copied either way
  bool desc_act = false;      // informational: g_idx is honoured either way
  bool v2 = false;            // checkpoint_format "gptq_v2": zero points stored as is
};

// The GPTQ settings of a model, from config.json's "quantization_config"
// (`config_json`, the file's text) or, when config.json has none, from
// AutoGPTQ's older quantize_config.json (`quantize_config_json`, empty if the
// directory has no such file). nullopt for a model that is not quantized.
// Throws qlm::Error naming `source` and the key for another quantization
// method, bits other than 4, a group size other than 32/64/128 (including
// -1, one group per row), or an unknown checkpoint_format.
std::optional<GptqConfig> ParseGptqConfig(std::string_view config_json,
                                          std::string_view quantize_config_json,
                                          const std::string& source);

// The same for a model directory (reads DIR/config.json and, if present,
// DIR/quantize_config.json).
std::optional<GptqConfig> ReadGptqConfig(const std::string& dir);

// The four stored tensors of one GPTQ linear; g_idx may be null (then
// g_idx[k] = k / group_size). Pointers into a WeightStore (or test data).
struct GptqLinear {
  std::string name;  // the linear's prefix, e.g. "model.layers.0.self_attn.q_proj"
  const StoredTensor* qweight = nullptr;
  const StoredTensor* qzeros = nullptr;
  const StoredTensor* scales = nullptr;
  const StoredTensor* g_idx = nullptr;
};

// The stored tensors of linear `prefix` in `store` (prefix + ".qweight",
// ".qzeros", ".scales", optional ".g_idx"). Throws naming the missing tensor
// and `store.source()`; also throws for a prefix + ".bias" tensor (qlm's
// graph has no linear biases).
GptqLinear FindGptqLinear(const WeightStore& store, const std::string& prefix);

// A validated GPTQ linear, ready to be repacked (in parallel if wanted).
struct GptqRepackPlan {
  GptqLinear in;
  GptqConfig config;
  uint64_t rows = 0, cols = 0;  // N outputs, K inputs
  uint64_t groups = 0;          // ceil(K / group_size), GPTQ's group count
  // perm[j] = the original input stored at column j (inputs sorted stably by
  // g_idx); inv_perm[k] = the column of input k. Empty when the order is
  // already the identity (no act-order): the tensor then has no perm section.
  std::vector<int32_t> perm, inv_perm;
  TensorDesc desc;  // q4, group_size, has_perm = !perm.empty()
};

// Checks every tensor's dtype and shape against rows = N and cols = K (from
// config.json), and every g_idx value: in range, and each group holding
// exactly group_size inputs (the last one K − (groups−1)·group_size), which
// is what lets a qlm group hold exactly the inputs of one GPTQ group. Every
// failure is a qlm::Error naming the tensor and what is wrong.
GptqRepackPlan PlanGptqRepack(const GptqLinear& in, const GptqConfig& config, uint64_t rows,
                              uint64_t cols);

// Allocates the q4 tensor for `plan` (perm section filled in).
QuantizedTensor AllocateGptqRepacked(const GptqRepackPlan& plan);

// Repacks outputs [row_begin, row_end) of `plan` into `out` (which
// AllocateGptqRepacked made). Row ranges are independent and may run
// concurrently. Throws for a non-finite scale or a zero point qlm cannot
// hold (a v1 stored zero of 15 means z = 16, repacked exactly as q − 1 with
// z = 15 when no code of that group is 0; otherwise an error).
void RepackGptqRows(const GptqRepackPlan& plan, uint64_t row_begin, uint64_t row_end,
                    QuantizedTensor& out);

// Plan + allocate + repack every row, single-threaded.
QuantizedTensor RepackGptqLinear(const GptqLinear& in, const GptqConfig& config, uint64_t rows,
                                 uint64_t cols);

}  // namespace qlm
