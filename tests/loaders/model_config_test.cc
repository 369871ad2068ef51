// config.json parsing: the shared models, Hugging Face defaults per
// model_type, and clear errors for broken configs.
#include "loaders/model_config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/error.h"
#include "loaders/generation_config.h"
#include "tests/loaders/shared_data.h"

namespace qlm {
namespace {

using nlohmann::json;

std::vector<bool> Pattern(const std::string& s) {  // "SSF" → {true, true, false}
  std::vector<bool> v;
  for (char c : s) v.push_back(c == 'S');
  return v;
}

// The smallest config of each type: model_type and the required sizes.
json Minimal(const std::string& model_type) {
  return json{{"model_type", model_type}, {"vocab_size", 1000},     {"hidden_size", 64},
              {"intermediate_size", 128}, {"num_hidden_layers", 4}, {"num_attention_heads", 4}};
}

ModelConfig Parse(const json& j) { return ParseHfConfig(j.dump()); }

// Parsing must throw a qlm::Error whose message contains every needle.
void ExpectError(const std::string& text, const std::vector<std::string>& needles) {
  try {
    ParseHfConfig(text);
    ADD_FAILURE() << "no error for " << text;
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const std::string& n : needles) {
      EXPECT_NE(msg.find(n), std::string::npos) << "'" << n << "' not in: " << msg;
    }
  }
}
void ExpectError(const json& j, const std::vector<std::string>& needles) {
  ExpectError(j.dump(), needles);
}
void ExpectError(const char* text, const std::vector<std::string>& needles) {
  ExpectError(std::string(text), needles);
}

// ---- The shared models ----

TEST(ModelConfigShared, AustenGemma3) {
  QLM_SHARED_PATH(path, "models/austen-gemma3/config.json");
  const ModelConfig c = ReadHfConfig(path);
  EXPECT_EQ(c.arch, Arch::kGemma3);
  EXPECT_EQ(c.model_type, "gemma3_text");
  EXPECT_STREQ(ArchName(c.arch), "gemma3_text");
  EXPECT_EQ(c.vocab_size, 8000);
  EXPECT_EQ(c.hidden_size, 256);
  EXPECT_EQ(c.intermediate_size, 768);
  EXPECT_EQ(c.num_layers, 6);
  EXPECT_EQ(c.num_heads, 4);
  EXPECT_EQ(c.num_kv_heads, 1);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.max_position_embeddings, 2048);
  EXPECT_FLOAT_EQ(c.rms_norm_eps, 1e-6f);
  EXPECT_EQ(c.activation, Activation::kGeluTanh);
  EXPECT_FLOAT_EQ(c.rope_theta, 1e6f);
  EXPECT_FLOAT_EQ(c.rope_local_base_freq, 1e4f);
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::kNone);
  EXPECT_FLOAT_EQ(c.attn_scale, 0.125f);  // query_pre_attn_scalar 64
  EXPECT_EQ(c.attn_logit_softcap, 0.0f);
  EXPECT_EQ(c.final_logit_softcap, 0.0f);
  EXPECT_EQ(c.sliding_window, 128);
  EXPECT_EQ(c.layer_is_sliding, Pattern("SSSSSF"));
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_TRUE(c.norm_add_one);
  EXPECT_TRUE(c.scale_embeddings);
  EXPECT_TRUE(c.post_norms);
  EXPECT_TRUE(c.qk_norm);
  EXPECT_EQ(c.bos_token_id, 2);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int>{1}));
}

TEST(ModelConfigShared, TinyGemma) {
  QLM_SHARED_PATH(path, "fixtures/tiny-gemma/config.json");
  const ModelConfig c = ReadHfConfig(path);
  EXPECT_EQ(c.arch, Arch::kGemma);
  EXPECT_EQ(c.hidden_size, 128);
  EXPECT_EQ(c.num_layers, 3);
  EXPECT_EQ(c.num_kv_heads, 1);
  EXPECT_EQ(c.head_dim, 32);
  // hidden_activation wins over the legacy "hidden_act": "gelu".
  EXPECT_EQ(c.activation, Activation::kGeluTanh);
  EXPECT_FLOAT_EQ(c.attn_scale, 1.0f / std::sqrt(32.0f));
  EXPECT_FLOAT_EQ(c.rope_theta, 1e4f);
  EXPECT_FLOAT_EQ(c.rope_local_base_freq, 1e4f);
  EXPECT_EQ(c.attn_logit_softcap, 0.0f);
  EXPECT_EQ(c.final_logit_softcap, 0.0f);
  EXPECT_EQ(c.sliding_window, 0);
  EXPECT_EQ(c.layer_is_sliding, Pattern("FFF"));
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_TRUE(c.norm_add_one);
  EXPECT_TRUE(c.scale_embeddings);
  EXPECT_FALSE(c.post_norms);
  EXPECT_FALSE(c.qk_norm);
}

TEST(ModelConfigShared, TinyGemma2) {
  QLM_SHARED_PATH(path, "fixtures/tiny-gemma2/config.json");
  const ModelConfig c = ReadHfConfig(path);
  EXPECT_EQ(c.arch, Arch::kGemma2);
  EXPECT_EQ(c.num_layers, 4);
  EXPECT_EQ(c.num_heads, 4);
  EXPECT_EQ(c.num_kv_heads, 2);
  EXPECT_EQ(c.head_dim, 32);
  EXPECT_FLOAT_EQ(c.attn_scale, 1.0f / std::sqrt(32.0f));
  EXPECT_FLOAT_EQ(c.attn_logit_softcap, 50.0f);
  EXPECT_FLOAT_EQ(c.final_logit_softcap, 30.0f);
  EXPECT_EQ(c.sliding_window, 24);
  EXPECT_EQ(c.layer_is_sliding, Pattern("SFSF"));  // even layers slide
  EXPECT_FLOAT_EQ(c.rope_theta, 1e4f);
  EXPECT_FLOAT_EQ(c.rope_local_base_freq, 1e4f);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_TRUE(c.norm_add_one);
  EXPECT_TRUE(c.scale_embeddings);
  EXPECT_TRUE(c.post_norms);
  EXPECT_FALSE(c.qk_norm);
  EXPECT_EQ(c.activation, Activation::kGeluTanh);
}

TEST(ModelConfigShared, TinyLlama) {
  QLM_SHARED_PATH(path, "fixtures/tiny-llama/config.json");
  const ModelConfig c = ReadHfConfig(path);
  EXPECT_EQ(c.arch, Arch::kLlama);
  EXPECT_EQ(c.intermediate_size, 352);
  EXPECT_EQ(c.num_heads, 4);
  EXPECT_EQ(c.num_kv_heads, 2);
  EXPECT_EQ(c.head_dim, 32);  // hidden_size / num_attention_heads
  EXPECT_EQ(c.activation, Activation::kSilu);
  EXPECT_FLOAT_EQ(c.rms_norm_eps, 1e-5f);
  EXPECT_FLOAT_EQ(c.attn_scale, 1.0f / std::sqrt(32.0f));
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::kNone);
  EXPECT_FLOAT_EQ(c.rope_theta, 1e4f);
  EXPECT_FLOAT_EQ(c.rope_local_base_freq, 1e4f);
  EXPECT_EQ(c.sliding_window, 0);
  EXPECT_EQ(c.layer_is_sliding, Pattern("FFF"));
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_FALSE(c.norm_add_one);
  EXPECT_FALSE(c.scale_embeddings);
  EXPECT_FALSE(c.post_norms);
  EXPECT_FALSE(c.qk_norm);
  EXPECT_EQ(c.bos_token_id, 2);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int>{1}));
}

TEST(ModelConfigShared, GptqCheckpointConfigParses) {
  QLM_SHARED_PATH(path, "gptq/austen-gemma3-gptq-g128/config.json");
  const ModelConfig c = ReadHfConfig(path);
  EXPECT_EQ(c.arch, Arch::kGemma3);
  EXPECT_EQ(c.layer_is_sliding, Pattern("SSSSSF"));
  EXPECT_FLOAT_EQ(c.attn_scale, 0.125f);
}

TEST(GenerationConfigShared, AustenStopsOnEosAndEndOfTurn) {
  QLM_SHARED_PATH(dir, "models/austen-gemma3");
  const GenerationConfig g = ReadGenerationConfig(dir);
  EXPECT_EQ(g.bos_token_id, 2);
  EXPECT_EQ(g.eos_token_ids, (std::vector<int>{1, 5}));
  EXPECT_EQ(g.pad_token_id, 0);
  EXPECT_FALSE(g.temperature.has_value());
  const ModelConfig c = ReadHfConfig(dir + "/config.json");
  EXPECT_EQ(StopTokenIds(c, g), (std::vector<int>{1, 5}));
  EXPECT_EQ(StopTokenIds(c, GenerationConfig{}), (std::vector<int>{1}));
  // A directory without the file gives an empty config.
  QLM_SHARED_PATH(tiny, "fixtures/tiny-llama");
  EXPECT_TRUE(ReadGenerationConfig(tiny).eos_token_ids.empty());
}

// ---- Hugging Face defaults for absent keys ----

TEST(ModelConfig, LlamaDefaults) {
  const ModelConfig c = Parse(Minimal("llama"));
  EXPECT_EQ(c.num_kv_heads, 4);  // = num_attention_heads
  EXPECT_EQ(c.head_dim, 16);     // = hidden / heads
  EXPECT_EQ(c.max_position_embeddings, 2048);
  EXPECT_FLOAT_EQ(c.rms_norm_eps, 1e-6f);
  EXPECT_EQ(c.activation, Activation::kSilu);
  EXPECT_FLOAT_EQ(c.rope_theta, 1e4f);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.bos_token_id, 1);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int>{2}));
  EXPECT_FLOAT_EQ(c.attn_scale, 0.25f);
  // null means the same as absent for these two.
  json j = Minimal("llama");
  j["num_key_value_heads"] = nullptr;
  j["head_dim"] = nullptr;
  EXPECT_EQ(Parse(j).num_kv_heads, 4);
  EXPECT_EQ(Parse(j).head_dim, 16);
  // An explicit head_dim is used as given (and sets the scale).
  j["head_dim"] = 32;
  EXPECT_EQ(Parse(j).head_dim, 32);
  EXPECT_FLOAT_EQ(Parse(j).attn_scale, 1.0f / std::sqrt(32.0f));
}

TEST(ModelConfig, GemmaDefaults) {
  json j = Minimal("gemma");
  j["num_attention_heads"] = 16;
  const ModelConfig c = Parse(j);
  EXPECT_EQ(c.num_kv_heads, 16);
  EXPECT_EQ(c.head_dim, 256);
  EXPECT_EQ(c.max_position_embeddings, 8192);
  EXPECT_EQ(c.activation, Activation::kGeluTanh);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.bos_token_id, 2);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int>{1}));
  EXPECT_FLOAT_EQ(c.attn_scale, 1.0f / 16.0f);
  // The original Gemma configs: only "hidden_act": "gelu" → tanh GELU.
  j["hidden_act"] = "gelu";
  EXPECT_EQ(Parse(j).activation, Activation::kGeluTanh);
  j["hidden_activation"] = nullptr;
  EXPECT_EQ(Parse(j).activation, Activation::kGeluTanh);
}

TEST(ModelConfig, Gemma2Defaults) {
  const ModelConfig c = Parse(Minimal("gemma2"));
  EXPECT_EQ(c.num_kv_heads, 4);
  EXPECT_EQ(c.head_dim, 256);
  EXPECT_FLOAT_EQ(c.attn_scale, 1.0f / 16.0f);  // query_pre_attn_scalar 256
  EXPECT_FLOAT_EQ(c.attn_logit_softcap, 50.0f);
  EXPECT_FLOAT_EQ(c.final_logit_softcap, 30.0f);
  EXPECT_EQ(c.sliding_window, 4096);
  EXPECT_EQ(c.layer_is_sliding, Pattern("SFSF"));
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_TRUE(c.post_norms);
  EXPECT_FALSE(c.qk_norm);
  // Explicit nulls switch the caps off; layer_types overrides the pattern.
  json j = Minimal("gemma2");
  j["attn_logit_softcapping"] = nullptr;
  j["final_logit_softcapping"] = nullptr;
  j["layer_types"] = {"full_attention", "sliding_attention", "full_attention", "sliding_attention"};
  const ModelConfig d = Parse(j);
  EXPECT_EQ(d.attn_logit_softcap, 0.0f);
  EXPECT_EQ(d.final_logit_softcap, 0.0f);
  EXPECT_EQ(d.layer_is_sliding, Pattern("FSFS"));
  // No window at all: no layer slides.
  j["sliding_window"] = nullptr;
  EXPECT_EQ(Parse(j).layer_is_sliding, Pattern("FFFF"));
  EXPECT_EQ(Parse(j).sliding_window, 0);
}

TEST(ModelConfig, Gemma3Defaults) {
  json j = Minimal("gemma3_text");
  j["num_hidden_layers"] = 13;
  const ModelConfig c = Parse(j);
  EXPECT_EQ(c.max_position_embeddings, 131072);
  EXPECT_FLOAT_EQ(c.rope_theta, 1e6f);
  EXPECT_FLOAT_EQ(c.rope_local_base_freq, 1e4f);
  EXPECT_FLOAT_EQ(c.attn_scale, 1.0f / 16.0f);
  EXPECT_EQ(c.final_logit_softcap, 0.0f);
  EXPECT_EQ(c.attn_logit_softcap, 0.0f);
  EXPECT_EQ(c.sliding_window, 4096);
  EXPECT_EQ(c.layer_is_sliding, Pattern("SSSSSFSSSSSFS"));  // sliding_window_pattern 6
  EXPECT_TRUE(c.qk_norm);
  EXPECT_TRUE(c.post_norms);
  j["sliding_window_pattern"] = 2;
  EXPECT_EQ(Parse(j).layer_is_sliding, Pattern("SFSFSFSFSFSFS"));
  // Gemma 3's modeling code applies no attention soft-cap even if set.
  j["attn_logit_softcapping"] = 50.0;
  j["final_logit_softcapping"] = 30.0;
  EXPECT_EQ(Parse(j).attn_logit_softcap, 0.0f);
  EXPECT_FLOAT_EQ(Parse(j).final_logit_softcap, 30.0f);
}

// ---- RoPE ----

TEST(ModelConfig, RopeScaling) {
  json j = Minimal("llama");
  j["rope_scaling"] = {{"rope_type", "llama3"},
                       {"factor", 8.0},
                       {"low_freq_factor", 1.0},
                       {"high_freq_factor", 4.0},
                       {"original_max_position_embeddings", 8192}};
  j["rope_theta"] = 500000.0;
  ModelConfig c = Parse(j);
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::kLlama3);
  EXPECT_FLOAT_EQ(c.rope_scaling.factor, 8.0f);
  EXPECT_FLOAT_EQ(c.rope_scaling.low_freq_factor, 1.0f);
  EXPECT_FLOAT_EQ(c.rope_scaling.high_freq_factor, 4.0f);
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 8192);
  EXPECT_FLOAT_EQ(c.rope_theta, 500000.0f);

  j["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};  // legacy key
  c = Parse(j);
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::kLinear);
  EXPECT_FLOAT_EQ(c.rope_scaling.factor, 2.0f);
  j["rope_scaling"] = {{"rope_type", "default"}};
  EXPECT_EQ(Parse(j).rope_scaling.type, RopeScaling::Type::kNone);
  j["rope_scaling"] = nullptr;
  EXPECT_EQ(Parse(j).rope_scaling.type, RopeScaling::Type::kNone);

  // Gemma 3: scaling for global layers, local layers keep their own base.
  json g = Minimal("gemma3_text");
  g["rope_scaling"] = {{"rope_type", "linear"}, {"factor", 8.0}};
  c = Parse(g);
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::kLinear);
  EXPECT_FLOAT_EQ(c.rope_scaling.factor, 8.0f);
  EXPECT_FLOAT_EQ(c.rope_theta, 1e6f);
  EXPECT_FLOAT_EQ(c.rope_local_base_freq, 1e4f);
}

TEST(ModelConfig, RopeParameters) {
  json j = Minimal("llama");
  j["rope_parameters"] = {{"rope_type", "linear"}, {"factor", 4.0}, {"rope_theta", 20000.0}};
  ModelConfig c = Parse(j);
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::kLinear);
  EXPECT_FLOAT_EQ(c.rope_scaling.factor, 4.0f);
  EXPECT_FLOAT_EQ(c.rope_theta, 20000.0f);
  EXPECT_FLOAT_EQ(c.rope_local_base_freq, 20000.0f);

  json g = Minimal("gemma3_text");
  g["rope_parameters"] = {
      {"full_attention", {{"rope_type", "linear"}, {"factor", 8.0}, {"rope_theta", 2e6}}},
      {"sliding_attention", {{"rope_type", "default"}, {"rope_theta", 5e3}}}};
  c = Parse(g);
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::kLinear);
  EXPECT_FLOAT_EQ(c.rope_theta, 2e6f);
  EXPECT_FLOAT_EQ(c.rope_local_base_freq, 5e3f);
  g["rope_parameters"]["sliding_attention"]["rope_type"] = "linear";
  g["rope_parameters"]["sliding_attention"]["factor"] = 2.0;
  ExpectError(g, {"sliding"});
}

TEST(ModelConfig, RopeErrors) {
  json j = Minimal("llama");
  j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
  ExpectError(j, {"yarn", "not supported"});
  j["rope_scaling"] = {{"rope_type", "dynamic"}, {"factor", 4.0}};
  ExpectError(j, {"dynamic"});
  j["rope_scaling"] = {{"rope_type", "llama3"},
                       {"factor", 8.0},
                       {"high_freq_factor", 4.0},
                       {"original_max_position_embeddings", 8192}};
  ExpectError(j, {"low_freq_factor"});
  j["rope_scaling"] = {{"rope_type", "linear"}};
  ExpectError(j, {"factor"});
  j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", "2"}};
  ExpectError(j, {"factor", "number"});
  j["rope_scaling"] = {{"factor", 2.0}};
  ExpectError(j, {"rope_type"});
  j["rope_scaling"] = "linear";
  ExpectError(j, {"rope_scaling", "object"});
  j["rope_scaling"] = nullptr;
  j["rope_theta"] = -1.0;
  ExpectError(j, {"rope_theta", "positive"});
  j["rope_theta"] = "10000";
  ExpectError(j, {"rope_theta", "number"});
}

// ---- Other values ----

TEST(ModelConfig, TokenIds) {
  json j = Minimal("gemma3_text");
  j["eos_token_id"] = {1, 106};
  j["bos_token_id"] = nullptr;
  ModelConfig c = Parse(j);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int>{1, 106}));
  EXPECT_EQ(c.bos_token_id, -1);
  j["eos_token_id"] = nullptr;
  EXPECT_TRUE(Parse(j).eos_token_ids.empty());
  j["eos_token_id"] = 5000;
  ExpectError(j, {"eos_token_id", "outside the vocabulary"});
  j["eos_token_id"] = {1, "2"};
  ExpectError(j, {"eos_token_id", "integer"});
  j["eos_token_id"] = 1;
  j["bos_token_id"] = -7;
  ExpectError(j, {"bos_token_id"});
}

// ---- Errors ----

TEST(ModelConfig, RejectsUnknownOrMissingModelType) {
  json j = Minimal("mistral");
  ExpectError(j, {"unknown model_type", "\"mistral\""});
  j["model_type"] = "gemma3";
  ExpectError(j, {"gemma3_text"});
  j.erase("model_type");
  ExpectError(j, {"missing", "model_type"});
  j["model_type"] = 3;
  ExpectError(j, {"model_type", "string"});
}

TEST(ModelConfig, RejectsMissingRequiredKeys) {
  for (const char* key : {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                          "num_attention_heads"}) {
    json j = Minimal("gemma2");
    j.erase(key);
    ExpectError(j, {"missing required key", key});
    j[key] = nullptr;
    ExpectError(j, {key, "integer"});
  }
}

TEST(ModelConfig, RejectsZeroAndNegativeSizes) {
  for (const char* key :
       {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
        "num_attention_heads", "num_key_value_heads", "head_dim", "max_position_embeddings"}) {
    for (int v : {0, -4}) {
      json j = Minimal("llama");
      j[key] = v;
      ExpectError(j, {key, "positive"});
    }
  }
  json j = Minimal("gemma2");
  j["sliding_window"] = 0;
  ExpectError(j, {"sliding_window", "positive"});
  j = Minimal("gemma3_text");
  j["sliding_window_pattern"] = 0;
  ExpectError(j, {"sliding_window_pattern", "positive"});
  j = Minimal("gemma2");
  j["query_pre_attn_scalar"] = 0;
  ExpectError(j, {"query_pre_attn_scalar", "positive"});
  j = Minimal("gemma2");
  j["attn_logit_softcapping"] = 0.0;
  ExpectError(j, {"attn_logit_softcapping", "positive"});
  j = Minimal("gemma2");
  j["hidden_size"] = 1LL << 40;
  ExpectError(j, {"hidden_size", "too large"});
}

TEST(ModelConfig, RejectsHeadsNotMultipleOfKvHeads) {
  json j = Minimal("llama");
  j["num_attention_heads"] = 6;
  j["num_key_value_heads"] = 4;
  j["head_dim"] = 16;
  ExpectError(j, {"num_attention_heads", "(6)", "multiple", "num_key_value_heads (4)"});
  j = Minimal("llama");
  j["num_attention_heads"] = 5;  // 64 / 5: no head_dim to fall back on
  ExpectError(j, {"num_attention_heads", "does not divide", "hidden_size"});
}

TEST(ModelConfig, RejectsWrongJsonTypes) {
  auto with = [](const std::string& type, const std::string& key, const json& v) {
    json j = Minimal(type);
    j[key] = v;
    return j;
  };
  ExpectError(with("llama", "hidden_size", "64"), {"hidden_size", "integer", "string"});
  ExpectError(with("llama", "hidden_size", 64.5), {"hidden_size", "integer"});
  ExpectError(with("llama", "hidden_size", true), {"hidden_size", "integer"});
  ExpectError(with("llama", "num_hidden_layers", json::array({4})),
              {"num_hidden_layers", "integer"});
  ExpectError(with("gemma", "head_dim", nullptr), {"head_dim", "integer"});
  ExpectError(with("llama", "rms_norm_eps", "1e-6"), {"rms_norm_eps", "number"});
  ExpectError(with("llama", "tie_word_embeddings", "true"),
              {"tie_word_embeddings", "true or false"});
  ExpectError(with("llama", "hidden_act", 1), {"hidden_act", "string"});
  ExpectError(with("llama", "hidden_act", "relu"), {"hidden_act", "relu"});
  ExpectError(with("gemma2", "hidden_activation", "gelu"), {"hidden_activation", "\"gelu\""});
  ExpectError(with("gemma2", "final_logit_softcapping", "30"), {"final_logit_softcapping"});
  ExpectError(with("gemma2", "sliding_window", 4.5), {"sliding_window", "integer"});
  ExpectError(with("gemma3_text", "query_pre_attn_scalar", "256"), {"query_pre_attn_scalar"});
  ExpectError(with("llama", "attention_bias", true), {"attention_bias", "not supported"});
  ExpectError(with("llama", "mlp_bias", 1), {"mlp_bias", "true or false"});
  ExpectError(with("gemma3_text", "use_bidirectional_attention", true),
              {"use_bidirectional_attention"});
  ExpectError("[1, 2]", {"config.json", "object"});
  ExpectError("{\"model_type\": ", {"config.json", "not valid JSON"});
  ExpectError("", {"config.json", "not valid JSON"});
}

TEST(ModelConfig, RejectsBadLayerTypes) {
  json j = Minimal("gemma3_text");
  j["layer_types"] = {"sliding_attention", "full_attention"};
  ExpectError(j, {"layer_types", "2 entries", "num_hidden_layers is 4"});
  j["layer_types"] = {"sliding_attention", "full_attention", "chunked_attention", "full_attention"};
  ExpectError(j, {"layer_types", "entry 2", "chunked_attention"});
  j["layer_types"] = "sliding_attention";
  ExpectError(j, {"layer_types", "list"});
  j["layer_types"] = {1, 2, 3, 4};
  ExpectError(j, {"layer_types", "entry 0"});
}

TEST(ModelConfig, SurvivesDeeplyNestedValues) {
  // Error messages describe the offending value without serializing a
  // container (a recursive dump of this would overflow the stack).
  const std::string deep = std::string(200000, '[') + std::string(200000, ']');
  for (const char* key : {"hidden_size", "layer_types", "rope_scaling", "eos_token_id"}) {
    json j = Minimal("gemma3_text");
    j[key] = "DEEP";
    std::string text = j.dump();
    const size_t at = text.find("\"DEEP\"");
    ASSERT_NE(at, std::string::npos);
    ExpectError(text.substr(0, at) + deep + text.substr(at + 6), {key});
  }
}

TEST(ModelConfig, ReadHfConfigNamesTheFile) {
  const std::string dir =
      std::filesystem::temp_directory_path() / ("qlm_cfg_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/config.json";
  {
    std::ofstream out(path);
    json j = Minimal("llama");
    j["num_attention_heads"] = 0;
    out << j.dump();
  }
  try {
    ReadHfConfig(path);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).rfind(path, 0), 0u) << e.what();
    EXPECT_NE(std::string(e.what()).find("num_attention_heads"), std::string::npos);
  }
  try {
    ReadHfConfig(dir + "/missing.json");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(dir + "/missing.json"), std::string::npos);
  }
  std::filesystem::remove_all(dir);
}

TEST(GenerationConfig, ParsesAndValidates) {
  GenerationConfig g = ParseGenerationConfig(
      R"({"bos_token_id": 2, "eos_token_id": 1, "do_sample": true, "temperature": 0.7,
          "top_k": 64, "top_p": 0.95, "min_p": null, "repetition_penalty": 1.1,
          "max_new_tokens": 100, "transformers_version": "4.50.0"})");
  EXPECT_EQ(g.bos_token_id, 2);
  EXPECT_EQ(g.eos_token_ids, (std::vector<int>{1}));
  EXPECT_EQ(g.do_sample, true);
  EXPECT_FLOAT_EQ(*g.temperature, 0.7f);
  EXPECT_EQ(g.top_k, 64);
  EXPECT_FLOAT_EQ(*g.top_p, 0.95f);
  EXPECT_FALSE(g.min_p.has_value());
  EXPECT_FLOAT_EQ(*g.repetition_penalty, 1.1f);
  EXPECT_EQ(g.max_new_tokens, 100);
  EXPECT_TRUE(ParseGenerationConfig("{}").eos_token_ids.empty());

  auto expect_error = [](const std::string& text, const std::string& needle) {
    try {
      ParseGenerationConfig(text);
      ADD_FAILURE() << "no error for " << text;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("generation_config.json"), std::string::npos);
    }
  };
  expect_error(R"({"temperature": "hot"})", "temperature");
  expect_error(R"({"top_p": 1.5})", "top_p");
  expect_error(R"({"top_k": -1})", "top_k");
  expect_error(R"({"eos_token_id": [1, -2]})", "eos_token_id");
  expect_error(R"({"do_sample": 1})", "do_sample");
  expect_error(R"([])", "object");
  expect_error(R"({"eos_token_id": )", "not valid JSON");
}

}  // namespace
}  // namespace qlm
