// generation_config.json: the token ids and sampling defaults a Hugging Face
// model ships for generation. Optional file; every field is optional.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "loaders/model_config.h"

namespace qlm {

struct GenerationConfig {
  std::optional<int> bos_token_id;
  std::vector<int> eos_token_ids;  // empty when absent or null
  std::optional<int> pad_token_id;
  std::optional<bool> do_sample;
  std::optional<float> temperature;
  std::optional<int> top_k;
  std::optional<float> top_p;
  std::optional<float> min_p;
  std::optional<float> repetition_penalty;
  std::optional<int> max_new_tokens;
};

// Parses generation_config.json text. A JSON null counts as absent. Throws
// qlm::Error naming the key for a wrongly-typed or out-of-range value.
GenerationConfig ParseGenerationConfig(std::string_view json_text);

// DIR/generation_config.json if it exists, else an empty GenerationConfig.
GenerationConfig ReadGenerationConfig(const std::string& dir);

// The ids that end generation: generation_config's eos ids when it has any
// (as transformers' generate() does), else config.json's.
std::vector<int> StopTokenIds(const ModelConfig& model, const GenerationConfig& gen);

}  // namespace qlm
