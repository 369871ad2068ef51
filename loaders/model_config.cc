// config.json → ModelConfig, following Hugging Face transformers: the
// defaults are those of configuration_{llama,gemma,gemma2,gemma3}.py for a
// key that is absent, and the derived values (attention scale, sliding
// layers, activation) are what modeling_*.py computes from them.
//
// Required keys: model_type and the sizes that fix every tensor's shape
// (vocab_size, hidden_size, intermediate_size, num_hidden_layers,
// num_attention_heads). transformers would fill them from the defaults of
// some 2B-7B model, which for a checkpoint is never right.
#include "loaders/model_config.h"

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "base/error.h"
#include "loaders/json_fields.h"

namespace qlm {
namespace {

using json_fields::Describe;
using json_fields::Fields;
using nlohmann::json;

constexpr const char* kFile = "config.json";
// Far above any real model (the largest have a few hundred layers).
constexpr int kMaxLayers = 1 << 16;

// Per-architecture defaults from transformers' configuration classes.
struct ArchDefaults {
  int num_kv_heads;  // -1: num_attention_heads (llama)
  int head_dim;      // -1: hidden_size / num_attention_heads (llama)
  int max_position_embeddings;
  double rms_norm_eps;
  double rope_theta;
  bool tie_word_embeddings;
  int bos_token_id;
  int eos_token_id;
  const char* activation;  // hidden_act (llama) / hidden_activation (gemma*)
  double query_pre_attn_scalar;
  int sliding_window;
  std::optional<double> attn_logit_softcapping;
  std::optional<double> final_logit_softcapping;
};

ArchDefaults DefaultsFor(Arch arch) {
  switch (arch) {
    case Arch::kLlama:  // LlamaConfig
      return {-1, -1, 2048, 1e-6, 10000.0, false, 1, 2, "silu", 0, 0, {}, {}};
    case Arch::kGemma:  // GemmaConfig
      return {16, 256, 8192, 1e-6, 10000.0, true, 2, 1, "gelu_pytorch_tanh", 0, 0, {}, {}};
    case Arch::kGemma2:  // Gemma2Config
      return {4, 256, 8192, 1e-6, 10000.0, true, 2, 1, "gelu_pytorch_tanh", 256, 4096, 50.0, 30.0};
    case Arch::kGemma3:  // Gemma3TextConfig
      return {4, 256, 131072, 1e-6, 1000000.0, true, 2, 1, "gelu_pytorch_tanh", 256, 4096, {}, {}};
  }
  throw Error("unreachable");
}

Arch ParseArch(const std::string& model_type) {
  if (model_type == "llama") return Arch::kLlama;
  if (model_type == "gemma") return Arch::kGemma;
  if (model_type == "gemma2") return Arch::kGemma2;
  if (model_type == "gemma3_text") return Arch::kGemma3;
  if (model_type == "gemma3") {
    throw Error(std::string(kFile) +
                ": model_type \"gemma3\" is the multimodal Gemma 3; qlm runs text-only "
                "checkpoints (model_type \"gemma3_text\")");
  }
  throw Error(std::string(kFile) + ": unknown model_type \"" + model_type +
              "\" (qlm supports llama, gemma, gemma2, gemma3_text)");
}

// ACT2FN names → the activations qlm implements. gelu_new and gelu_fast are
// the same tanh approximation as gelu_pytorch_tanh; exact "gelu" is not.
Activation ParseActivation(const Fields& f, const std::string& key, const std::string& name) {
  if (name == "silu" || name == "swish") return Activation::kSilu;
  if (name == "gelu_pytorch_tanh" || name == "gelu_new" || name == "gelu_fast") {
    return Activation::kGeluTanh;
  }
  f.Fail(key,
         "is \"" + name + "\", an activation qlm does not implement (silu, gelu_pytorch_tanh)");
}

// One rope_scaling object (or the scaling part of a rope_parameters object).
RopeScaling ParseRopeScaling(const json& v, const std::string& key) {
  RopeScaling rs;
  if (v.is_null()) return rs;
  const Fields f(v, std::string(kFile) + ": \"" + key + "\"");
  std::optional<std::string> type = f.NullableString("rope_type", std::nullopt);
  if (!type) type = f.NullableString("type", std::nullopt);  // the legacy spelling
  if (!type) throw Error(f.file() + ": missing \"rope_type\"");
  if (*type == "default") return rs;
  auto positive = [&](const std::string& k) {
    const float x = f.ToFloat(k, f.Number(k));
    if (!(x > 0)) f.Fail(k, "must be positive");
    return x;
  };
  if (*type == "linear") {
    rs.type = RopeScaling::Type::kLinear;
    rs.factor = static_cast<float>(positive("factor"));
    return rs;
  }
  if (*type == "llama3") {
    rs.type = RopeScaling::Type::kLlama3;
    rs.factor = static_cast<float>(positive("factor"));
    rs.low_freq_factor = static_cast<float>(positive("low_freq_factor"));
    rs.high_freq_factor = static_cast<float>(positive("high_freq_factor"));
    rs.original_max_position_embeddings = f.Int("original_max_position_embeddings");
    if (rs.original_max_position_embeddings <= 0) {
      f.Fail("original_max_position_embeddings", "must be positive");
    }
    // The llama3 ramp divides by (high - low).
    if (rs.high_freq_factor <= rs.low_freq_factor) {
      f.Fail("high_freq_factor", "must be larger than low_freq_factor");
    }
    return rs;
  }
  throw Error(f.file() + ": rope type \"" + *type +
              "\" is not supported (qlm supports default, linear, llama3)");
}

// Newer transformers write RoPE settings as "rope_parameters": either one
// object {rope_type, rope_theta, factor...} or, for Gemma 3, one per layer
// type {"full_attention": {...}, "sliding_attention": {...}}. When present
// they take precedence over rope_theta / rope_scaling / rope_local_base_freq.
void ApplyRopeParameters(const json& rp, ModelConfig& c) {
  if (rp.is_null()) return;
  if (!rp.is_object()) {
    throw Error(std::string(kFile) + ": \"rope_parameters\" must be an object, not " +
                Describe(rp));
  }
  auto theta_of = [](const json& o, const std::string& where, float def) {
    const Fields f(o, std::string(kFile) + ": \"" + where + "\"");
    const float t = f.ToFloat("rope_theta", f.Number("rope_theta", def));
    if (!(t > 0)) f.Fail("rope_theta", "must be positive");
    return t;
  };
  const auto full = rp.find("full_attention");
  const auto sliding = rp.find("sliding_attention");
  if (full == rp.end() && sliding == rp.end()) {
    c.rope_theta = theta_of(rp, "rope_parameters", c.rope_theta);
    c.rope_scaling = ParseRopeScaling(rp, "rope_parameters");
    return;
  }
  if (full != rp.end() && !full->is_null()) {
    c.rope_theta = theta_of(*full, "rope_parameters.full_attention", c.rope_theta);
    c.rope_scaling = ParseRopeScaling(*full, "rope_parameters.full_attention");
  }
  if (sliding != rp.end() && !sliding->is_null()) {
    c.rope_local_base_freq =
        theta_of(*sliding, "rope_parameters.sliding_attention", c.rope_local_base_freq);
    if (ParseRopeScaling(*sliding, "rope_parameters.sliding_attention").type !=
        RopeScaling::Type::kNone) {
      throw Error(std::string(kFile) +
                  ": RoPE scaling on sliding-window layers is not supported "
                  "(\"rope_parameters.sliding_attention\")");
    }
  }
}

std::vector<bool> ParseLayerTypes(const Fields& f, int num_layers) {
  const json& v = *f.Find("layer_types");
  if (!v.is_array()) f.Fail("layer_types", "must be a list of strings, not " + Describe(v));
  if (v.size() != static_cast<size_t>(num_layers)) {
    f.Fail("layer_types", "has " + std::to_string(v.size()) + " entries but num_hidden_layers is " +
                              std::to_string(num_layers));
  }
  std::vector<bool> sliding;
  for (size_t i = 0; i < v.size(); ++i) {
    const json& t = v[i];
    if (t.is_string() && t.get<std::string>() == "sliding_attention") {
      sliding.push_back(true);
    } else if (t.is_string() && t.get<std::string>() == "full_attention") {
      sliding.push_back(false);
    } else {
      f.Fail("layer_types", "entry " + std::to_string(i) + " is " + Describe(t) +
                                "; expected \"sliding_attention\" or \"full_attention\"");
    }
  }
  return sliding;
}

void RequirePositive(const Fields& f, const std::string& key, double value) {
  if (value > 0) return;
  std::ostringstream v;
  v << value;
  f.Fail(key, "must be positive, not " + v.str());
}

}  // namespace

const char* ArchName(Arch a) {
  switch (a) {
    case Arch::kLlama:
      return "llama";
    case Arch::kGemma:
      return "gemma";
    case Arch::kGemma2:
      return "gemma2";
    case Arch::kGemma3:
      return "gemma3_text";
  }
  return "?";
}

ModelConfig ParseHfConfig(std::string_view json_text) {
  json root;
  try {
    root = json::parse(json_text.begin(), json_text.end());
  } catch (const json::exception& e) {
    throw Error(std::string(kFile) + " is not valid JSON: " + e.what());
  }
  const Fields f(root, kFile);

  ModelConfig c;
  c.model_type = f.String("model_type");
  c.arch = ParseArch(c.model_type);
  const ArchDefaults d = DefaultsFor(c.arch);
  const bool gemma_family = c.arch != Arch::kLlama;

  c.vocab_size = f.Int("vocab_size");
  c.hidden_size = f.Int("hidden_size");
  c.intermediate_size = f.Int("intermediate_size");
  c.num_layers = f.Int("num_hidden_layers");
  c.num_heads = f.Int("num_attention_heads");
  RequirePositive(f, "vocab_size", c.vocab_size);
  RequirePositive(f, "hidden_size", c.hidden_size);
  RequirePositive(f, "intermediate_size", c.intermediate_size);
  RequirePositive(f, "num_hidden_layers", c.num_layers);
  // Per-layer state is allocated from this count before any weight is
  // checked: bound it so a config alone cannot demand gigabytes.
  if (c.num_layers > kMaxLayers) {
    f.Fail("num_hidden_layers", "(" + std::to_string(c.num_layers) +
                                    ") is more than qlm supports (" + std::to_string(kMaxLayers) +
                                    ")");
  }
  RequirePositive(f, "num_attention_heads", c.num_heads);

  // llama: num_key_value_heads and head_dim may be absent or null.
  if (c.arch == Arch::kLlama) {
    c.num_kv_heads = f.NullableInt("num_key_value_heads", std::nullopt).value_or(c.num_heads);
    const std::optional<int> head_dim = f.NullableInt("head_dim", std::nullopt);
    if (head_dim) {
      c.head_dim = *head_dim;
    } else {
      if (c.hidden_size % c.num_heads != 0) {
        f.Fail("num_attention_heads",
               "(" + std::to_string(c.num_heads) + ") does not divide hidden_size (" +
                   std::to_string(c.hidden_size) + ") and head_dim is not given");
      }
      c.head_dim = c.hidden_size / c.num_heads;
    }
  } else {
    c.num_kv_heads = f.Int("num_key_value_heads", d.num_kv_heads);
    c.head_dim = f.Int("head_dim", d.head_dim);
  }
  RequirePositive(f, "num_key_value_heads", c.num_kv_heads);
  RequirePositive(f, "head_dim", c.head_dim);
  if (c.num_heads % c.num_kv_heads != 0) {
    f.Fail("num_attention_heads", "(" + std::to_string(c.num_heads) +
                                      ") is not a multiple of num_key_value_heads (" +
                                      std::to_string(c.num_kv_heads) + ")");
  }

  c.max_position_embeddings = f.Int("max_position_embeddings", d.max_position_embeddings);
  RequirePositive(f, "max_position_embeddings", c.max_position_embeddings);
  const double eps = f.Number("rms_norm_eps", d.rms_norm_eps);
  if (eps < 0) f.Fail("rms_norm_eps", "must not be negative");
  c.rms_norm_eps = f.ToFloat("rms_norm_eps", eps);

  // Activation. llama: hidden_act. gemma2/3: hidden_activation. gemma (1):
  // hidden_activation, else gelu_pytorch_tanh — the original Gemma configs
  // say "hidden_act": "gelu", which transformers overrode (PR #29402)
  // because Gemma was trained with the tanh approximation.
  if (c.arch == Arch::kLlama) {
    c.activation = ParseActivation(f, "hidden_act", f.String("hidden_act", d.activation));
  } else {
    const std::string name =
        f.NullableString("hidden_activation", std::string(d.activation)).value_or(d.activation);
    c.activation = ParseActivation(f, "hidden_activation", name);
  }

  // Features this engine does not implement are refused, not ignored.
  if (f.Bool("attention_bias", false)) f.Fail("attention_bias", "true is not supported");
  if (f.Bool("mlp_bias", false)) f.Fail("mlp_bias", "true is not supported");
  if (!f.IsNullOrAbsent("use_bidirectional_attention") &&
      f.Bool("use_bidirectional_attention", false)) {
    f.Fail("use_bidirectional_attention", "true is not supported (qlm runs causal models)");
  }

  // RoPE.
  c.rope_theta = f.ToFloat("rope_theta", f.Number("rope_theta", d.rope_theta));
  RequirePositive(f, "rope_theta", c.rope_theta);
  if (const json* rs = f.Find("rope_scaling"))
    c.rope_scaling = ParseRopeScaling(*rs, "rope_scaling");
  if (c.arch == Arch::kGemma3) {
    c.rope_local_base_freq =
        f.ToFloat("rope_local_base_freq", f.Number("rope_local_base_freq", 10000.0));
    RequirePositive(f, "rope_local_base_freq", c.rope_local_base_freq);
  } else {
    c.rope_local_base_freq = c.rope_theta;  // one RoPE for every layer
  }
  if (const json* rp = f.Find("rope_parameters")) {
    ApplyRopeParameters(*rp, c);
    if (c.arch != Arch::kGemma3) c.rope_local_base_freq = c.rope_theta;
  }

  // Attention scale: modeling_llama/gemma use head_dim**-0.5,
  // modeling_gemma2/3 query_pre_attn_scalar**-0.5.
  if (c.arch == Arch::kGemma2 || c.arch == Arch::kGemma3) {
    const double qpas = f.Number("query_pre_attn_scalar", d.query_pre_attn_scalar);
    RequirePositive(f, "query_pre_attn_scalar", qpas);
    c.attn_scale = f.ToFloat("query_pre_attn_scalar", 1.0 / std::sqrt(qpas));
    if (!(c.attn_scale > 0)) f.Fail("query_pre_attn_scalar", "is too large");
  } else {
    c.attn_scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(c.head_dim)));
  }

  // Soft-caps (null → none). Gemma 2 applies both; Gemma 3 has the config
  // key for the attention cap but its modeling code never applies it, so it
  // is ignored here too; llama and gemma have neither.
  auto softcap = [&](const std::string& key, std::optional<double> def) {
    const std::optional<double> v = f.NullableNumber(key, def);
    if (!v) return 0.0f;
    const float x = f.ToFloat(key, *v);
    RequirePositive(f, key, x);
    return x;
  };
  if (c.arch == Arch::kGemma2) {
    c.attn_logit_softcap = softcap("attn_logit_softcapping", d.attn_logit_softcapping);
    c.final_logit_softcap = softcap("final_logit_softcapping", d.final_logit_softcapping);
  } else if (c.arch == Arch::kGemma3) {
    softcap("attn_logit_softcapping", d.attn_logit_softcapping);  // validated, unused
    c.final_logit_softcap = softcap("final_logit_softcapping", d.final_logit_softcapping);
  }

  // Sliding-window layers. gemma2: even layers (modeling_gemma2: layer_types
  // default "sliding_attention" if (i + 1) % 2 else "full_attention").
  // gemma3: layer_types, else every sliding_window_pattern-th layer is full.
  c.layer_is_sliding.assign(c.num_layers, false);
  if (c.arch == Arch::kGemma2 || c.arch == Arch::kGemma3) {
    const std::optional<int> window = f.NullableInt("sliding_window", d.sliding_window);
    if (!f.IsNullOrAbsent("layer_types")) {
      c.layer_is_sliding = ParseLayerTypes(f, c.num_layers);
    } else if (c.arch == Arch::kGemma2) {
      for (int i = 0; i < c.num_layers; ++i) c.layer_is_sliding[i] = (i + 1) % 2 != 0;
    } else {
      const int pattern = f.Int("sliding_window_pattern", 6);
      RequirePositive(f, "sliding_window_pattern", pattern);
      for (int i = 0; i < c.num_layers; ++i) c.layer_is_sliding[i] = (i + 1) % pattern != 0;
    }
    if (window) {
      RequirePositive(f, "sliding_window", *window);
      c.sliding_window = *window;
    } else {
      // No window: transformers then builds plain causal masks everywhere.
      c.sliding_window = 0;
      c.layer_is_sliding.assign(c.num_layers, false);
    }
  }

  c.tie_word_embeddings = f.Bool("tie_word_embeddings", d.tie_word_embeddings);
  c.norm_add_one = gemma_family;
  c.scale_embeddings = gemma_family;
  c.post_norms = c.arch == Arch::kGemma2 || c.arch == Arch::kGemma3;
  c.qk_norm = c.arch == Arch::kGemma3;

  c.bos_token_id = f.NullableInt("bos_token_id", d.bos_token_id).value_or(-1);
  if (c.bos_token_id < -1 || c.bos_token_id >= c.vocab_size) {
    f.Fail("bos_token_id", "(" + std::to_string(c.bos_token_id) + ") is outside the vocabulary");
  }
  c.eos_token_ids = f.IntOrIntList("eos_token_id", {d.eos_token_id});
  for (int id : c.eos_token_ids) {
    if (id < 0 || id >= c.vocab_size) {
      f.Fail("eos_token_id", "(" + std::to_string(id) + ") is outside the vocabulary");
    }
  }
  return c;
}

ModelConfig ReadHfConfig(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot open " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw Error("cannot read " + path);
  try {
    return ParseHfConfig(ss.str());
  } catch (const Error& e) {
    // Messages start with "config.json"; name the actual file instead.
    std::string msg = e.what();
    const std::string prefix = kFile;
    if (msg.compare(0, prefix.size(), prefix) == 0) msg = path + msg.substr(prefix.size());
    throw Error(msg);
  }
}

}  // namespace qlm
