// Fuzzes the JSON files of a model directory: the input is parsed as
// config.json (ParseHfConfig), generation_config.json (ParseGenerationConfig)
// and as the GPTQ settings in config.json or quantize_config.json
// (ParseGptqConfig). An accepted config.json must be one the graph can use:
// positive sizes, head counts that divide, ids inside the vocabulary, finite
// positive RoPE bases and scales.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "base/error.h"
#include "fuzz/fuzz_util.h"
#include "loaders/generation_config.h"
#include "loaders/gptq.h"
#include "loaders/model_config.h"

namespace {

bool PositiveFinite(float x) { return std::isfinite(x) && x > 0.0f; }

void CheckModelConfig(const qlm::ModelConfig& c) {
  FUZZ_CHECK(c.vocab_size > 0 && c.hidden_size > 0 && c.intermediate_size > 0);
  FUZZ_CHECK(c.num_layers > 0 && c.num_heads > 0 && c.num_kv_heads > 0 && c.head_dim > 0);
  FUZZ_CHECK(c.num_heads % c.num_kv_heads == 0);
  FUZZ_CHECK(c.max_position_embeddings > 0);
  FUZZ_CHECK(std::isfinite(c.rms_norm_eps) && c.rms_norm_eps >= 0.0f);
  FUZZ_CHECK(PositiveFinite(c.rope_theta) && PositiveFinite(c.rope_local_base_freq));
  FUZZ_CHECK(PositiveFinite(c.attn_scale));
  FUZZ_CHECK(std::isfinite(c.attn_logit_softcap) && c.attn_logit_softcap >= 0.0f);
  FUZZ_CHECK(std::isfinite(c.final_logit_softcap) && c.final_logit_softcap >= 0.0f);
  FUZZ_CHECK(c.sliding_window >= 0);
  FUZZ_CHECK(c.layer_is_sliding.size() == static_cast<size_t>(c.num_layers));
  FUZZ_CHECK(c.bos_token_id >= -1 && c.bos_token_id < c.vocab_size);
  for (const int id : c.eos_token_ids) FUZZ_CHECK(id >= 0 && id < c.vocab_size);
  const qlm::RopeScaling& rs = c.rope_scaling;
  FUZZ_CHECK(PositiveFinite(rs.factor));
  if (rs.type == qlm::RopeScaling::Type::kLlama3) {
    FUZZ_CHECK(PositiveFinite(rs.low_freq_factor) && PositiveFinite(rs.high_freq_factor));
    FUZZ_CHECK(rs.high_freq_factor > rs.low_freq_factor);
    FUZZ_CHECK(rs.original_max_position_embeddings > 0);
  }
}

void CheckGenerationConfig(const qlm::GenerationConfig& g) {
  for (const int id : g.eos_token_ids) FUZZ_CHECK(id >= 0);
  if (g.temperature) FUZZ_CHECK(std::isfinite(*g.temperature) && *g.temperature >= 0.0f);
  if (g.top_p) FUZZ_CHECK(*g.top_p >= 0.0f && *g.top_p <= 1.0f);
  if (g.min_p) FUZZ_CHECK(*g.min_p >= 0.0f && *g.min_p <= 1.0f);
  if (g.repetition_penalty) {
    FUZZ_CHECK(std::isfinite(*g.repetition_penalty) && *g.repetition_penalty > 0.0f);
  }
  if (g.top_k) FUZZ_CHECK(*g.top_k >= 0);
  if (g.max_new_tokens) FUZZ_CHECK(*g.max_new_tokens >= 0);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    CheckModelConfig(qlm::ParseHfConfig(text));
  } catch (const qlm::Error&) {
  }
  try {
    CheckGenerationConfig(qlm::ParseGenerationConfig(text));
  } catch (const qlm::Error&) {
  }
  try {
    if (const auto g = qlm::ParseGptqConfig(text, "", "fuzz")) {
      FUZZ_CHECK(g->group_size == 32 || g->group_size == 64 || g->group_size == 128);
    }
  } catch (const qlm::Error&) {
  }
  try {  // the same text as an AutoGPTQ quantize_config.json
    if (const auto g = qlm::ParseGptqConfig("{}", text, "fuzz")) {
      FUZZ_CHECK(g->group_size == 32 || g->group_size == 64 || g->group_size == 128);
    }
  } catch (const qlm::Error&) {
  }
  return 0;
}
