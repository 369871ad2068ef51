// A model's hyper-parameters, read from Hugging Face's config.json. Every
// value comes from the file (or the documented Hugging Face default for that
// model_type when the key is absent) — never inferred from size or name.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace qlm {

enum class Arch : uint8_t { kLlama, kGemma, kGemma2, kGemma3 };
const char* ArchName(Arch a);  // the model_type string

enum class Activation : uint8_t { kSilu, kGeluTanh };

struct RopeScaling {
  enum class Type : uint8_t { kNone, kLinear, kLlama3 } type = Type::kNone;
  float factor = 1.0f;
  float low_freq_factor = 1.0f;   // llama3
  float high_freq_factor = 4.0f;  // llama3
  int original_max_position_embeddings = 8192;  // llama3
};

struct ModelConfig {
  Arch arch = Arch::kLlama;
  std::string model_type;
  int vocab_size = 0;
  int hidden_size = 0;
  int intermediate_size = 0;
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int max_position_embeddings = 0;
  float rms_norm_eps = 1e-6f;
  Activation activation = Activation::kSilu;

  // RoPE: global (full-attention) layers use rope_theta + rope_scaling;
  // gemma3 local (sliding) layers use rope_local_base_freq, unscaled.
  float rope_theta = 10000.0f;
  float rope_local_base_freq = 10000.0f;
  RopeScaling rope_scaling;

  // Attention scores are multiplied by attn_scale: 1/sqrt(head_dim) for
  // llama/gemma, query_pre_attn_scalar^-0.5 for gemma2/3.
  float attn_scale = 1.0f;
  float attn_logit_softcap = 0.0f;   // 0 = none
  float final_logit_softcap = 0.0f;  // 0 = none
  int sliding_window = 0;            // 0 = none
  std::vector<bool> layer_is_sliding;  // num_layers entries

  bool tie_word_embeddings = false;
  bool norm_add_one = false;   // gemma family: x · (1 + w)
  bool scale_embeddings = false;  // gemma family: embeddings · sqrt(hidden)
  bool post_norms = false;     // gemma2/3: post-attention and post-FFN norms
  bool qk_norm = false;        // gemma3

  int bos_token_id = -1;
  std::vector<int> eos_token_ids;
};

// Parses config.json text. Throws qlm::Error naming the key for a missing
// or wrongly-typed key, an unknown model_type, or inconsistent values (zero
// heads, heads not a multiple of kv heads, ...).
ModelConfig ParseHfConfig(std::string_view json_text);

// Reads and parses a config.json file; errors name `path`.
ModelConfig ReadHfConfig(const std::string& path);

}  // namespace qlm
