#include "loaders/random_model.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <system_error>

#include "base/error.h"
#include "quant/half.h"

namespace qlm {
namespace {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

enum class Family : uint8_t { kLlama, kGemma2, kGemma3 };

// The dimensions tensors are built from; the config JSON is written from the
// same numbers plus the per-model keys below.
struct ShapeDef {
  const char* name;
  const char* source;
  Family family;
  bool test_only;
  int vocab, hidden, intermediate, layers, heads, kv_heads, head_dim;
  bool tied;
  // Builds config.json (every key of the real file, in its order).
  ojson (*config)(const ShapeDef&);
};

ojson LayerTypes(int layers, int pattern) {
  ojson types = ojson::array();
  for (int i = 0; i < layers; ++i) {
    types.push_back((i + 1) % pattern == 0 ? "full_attention" : "sliding_attention");
  }
  return types;
}

// google/gemma-2-2b. The published file leaves tie_word_embeddings and the
// alternating sliding layers to Gemma2Config's defaults (tied; even layers
// sliding); tie_word_embeddings is spelled out here.
ojson Gemma2Config(const ShapeDef& s) {
  const bool tiny = s.test_only;
  return ojson{
      {"architectures", {"Gemma2ForCausalLM"}},
      {"attention_bias", false},
      {"attention_dropout", 0.0},
      {"attn_logit_softcapping", 50.0},
      {"bos_token_id", 2},
      {"cache_implementation", "hybrid"},
      {"eos_token_id", 1},
      {"final_logit_softcapping", 30.0},
      {"head_dim", s.head_dim},
      {"hidden_act", "gelu_pytorch_tanh"},
      {"hidden_activation", "gelu_pytorch_tanh"},
      {"hidden_size", s.hidden},
      {"initializer_range", 0.02},
      {"intermediate_size", s.intermediate},
      {"max_position_embeddings", 8192},
      {"model_type", "gemma2"},
      {"num_attention_heads", s.heads},
      {"num_hidden_layers", s.layers},
      {"num_key_value_heads", s.kv_heads},
      {"pad_token_id", 0},
      {"query_pre_attn_scalar", s.head_dim},
      {"rms_norm_eps", 1e-06},
      {"rope_theta", 10000.0},
      {"sliding_window", tiny ? 16 : 4096},
      {"tie_word_embeddings", s.tied},
      {"torch_dtype", "bfloat16"},
      {"transformers_version", "4.42.4"},
      {"use_cache", true},
      {"vocab_size", s.vocab},
  };
}

// google/gemma-3-1b-pt: sliding_window_pattern 6 (5 local layers, then 1
// global); tie_word_embeddings (default true) spelled out.
ojson Gemma3_1bConfig(const ShapeDef& s) {
  return ojson{
      {"architectures", {"Gemma3ForCausalLM"}},
      {"attention_bias", false},
      {"attention_dropout", 0.0},
      {"attn_logit_softcapping", nullptr},
      {"bos_token_id", 2},
      {"cache_implementation", "hybrid"},
      {"eos_token_id", 1},
      {"final_logit_softcapping", nullptr},
      {"head_dim", s.head_dim},
      {"hidden_activation", "gelu_pytorch_tanh"},
      {"hidden_size", s.hidden},
      {"initializer_range", 0.02},
      {"intermediate_size", s.intermediate},
      {"max_position_embeddings", 32768},
      {"model_type", "gemma3_text"},
      {"num_attention_heads", s.heads},
      {"num_hidden_layers", s.layers},
      {"num_key_value_heads", s.kv_heads},
      {"pad_token_id", 0},
      {"query_pre_attn_scalar", 256},
      {"rms_norm_eps", 1e-06},
      {"rope_local_base_freq", 10000},
      {"rope_scaling", nullptr},
      {"rope_theta", 1000000},
      {"sliding_window", 512},
      {"sliding_window_pattern", 6},
      {"tie_word_embeddings", s.tied},
      {"torch_dtype", "bfloat16"},
      {"transformers_version", "4.50.0.dev0"},
      {"use_cache", true},
      {"vocab_size", s.vocab},
  };
}

// google/gemma-3-270m (and the tiny gemma3 test shape): an explicit
// layer_types list, global attention every 6th layer.
ojson Gemma3_270mConfig(const ShapeDef& s) {
  const bool tiny = s.test_only;
  return ojson{
      {"_sliding_window_pattern", tiny ? 3 : 6},
      {"architectures", {"Gemma3ForCausalLM"}},
      {"attention_bias", false},
      {"attention_dropout", 0.0},
      {"attn_logit_softcapping", nullptr},
      {"bos_token_id", 2},
      {"eos_token_id", 1},
      {"final_logit_softcapping", nullptr},
      {"head_dim", s.head_dim},
      {"hidden_activation", "gelu_pytorch_tanh"},
      {"hidden_size", s.hidden},
      {"initializer_range", 0.02},
      {"intermediate_size", s.intermediate},
      {"layer_types", LayerTypes(s.layers, tiny ? 3 : 6)},
      {"max_position_embeddings", 32768},
      {"model_type", "gemma3_text"},
      {"num_attention_heads", s.heads},
      {"num_hidden_layers", s.layers},
      {"num_key_value_heads", s.kv_heads},
      {"pad_token_id", 0},
      {"query_pre_attn_scalar", tiny ? s.head_dim : 256},
      {"rms_norm_eps", 1e-06},
      {"rope_local_base_freq", 10000.0},
      {"rope_scaling", nullptr},
      {"rope_theta", 1000000.0},
      {"sliding_window", tiny ? 16 : 512},
      {"tie_word_embeddings", s.tied},
      {"torch_dtype", "bfloat16"},
      {"transformers_version", "4.55.0.dev0"},
      {"use_bidirectional_attention", false},
      {"use_cache", true},
      {"vocab_size", s.vocab},
  };
}

// meta-llama/Llama-2-7b-hf. rope_theta is absent there (LlamaConfig's
// default 10000). Token ids are the Austen tokenizer's (Llama's own are bos
// 1, eos 2) so that generation with the copied tokenizer is consistent.
ojson Llama2Config(const ShapeDef& s) {
  return ojson{
      {"architectures", {"LlamaForCausalLM"}},
      {"bos_token_id", 2},
      {"eos_token_id", 1},
      {"hidden_act", "silu"},
      {"hidden_size", s.hidden},
      {"initializer_range", 0.02},
      {"intermediate_size", s.intermediate},
      {"max_position_embeddings", 4096},
      {"model_type", "llama"},
      {"num_attention_heads", s.heads},
      {"num_hidden_layers", s.layers},
      {"num_key_value_heads", s.kv_heads},
      {"pad_token_id", 0},
      {"pretraining_tp", 1},
      {"rms_norm_eps", 1e-05},
      {"rope_scaling", nullptr},
      {"tie_word_embeddings", s.tied},
      {"torch_dtype", "bfloat16"},
      {"transformers_version", "4.31.0.dev0"},
      {"use_cache", true},
      {"vocab_size", s.vocab},
  };
}

// clang-format off
constexpr ShapeDef kShapes[] = {
  //  name            source                       family           test   vocab   hidden inter  layers heads kv  hd   tied
  {"gemma-3-270m", "google/gemma-3-270m",       Family::kGemma3, false, 262144,  640,  2048, 18, 4,  1, 256, true,  Gemma3_270mConfig},
  {"gemma-3-1b",   "google/gemma-3-1b-pt",      Family::kGemma3, false, 262144, 1152,  6912, 26, 4,  1, 256, true,  Gemma3_1bConfig},
  {"gemma-2-2b",   "google/gemma-2-2b",         Family::kGemma2, false, 256000, 2304,  9216, 26, 8,  4, 256, true,  Gemma2Config},
  {"llama-2-7b",   "meta-llama/Llama-2-7b-hf",  Family::kLlama,  false,  32000, 4096, 11008, 32, 32, 32, 128, false, Llama2Config},
  // A few MB each, for tests: the same layouts at toy sizes (vocab = the
  // Austen tokenizer's 8000).
  {"tiny-test",        "tiny gemma3_text (tests)", Family::kGemma3, true, 8000, 64, 128, 3, 4, 2, 16, true,  Gemma3_270mConfig},
  {"tiny-test-gemma2", "tiny gemma2 (tests)",      Family::kGemma2, true, 8000, 64, 128, 2, 4, 2, 16, true,  Gemma2Config},
  {"tiny-test-llama",  "tiny llama (tests)",       Family::kLlama,  true, 8000, 64, 160, 2, 4, 2, 16, false, Llama2Config},
  // vocab_size padded past the tokenizer's 8000 pieces, as some checkpoints
  // round it up: the extra logit rows must never be sampled.
  {"tiny-test-padded", "tiny gemma3_text, padded vocab (tests)", Family::kGemma3, true, 8192, 64, 128, 2, 4, 2, 16, true, Gemma3_270mConfig},
};
// clang-format on

const ShapeDef& FindShape(const std::string& name) {
  for (const ShapeDef& s : kShapes) {
    if (name == s.name) return s;
  }
  std::string known;
  for (const ShapeDef& s : kShapes) {
    if (s.test_only) continue;
    known += known.empty() ? "" : ", ";
    known += s.name;
  }
  throw UsageError("unknown model shape '" + name + "' (known: " + known + ")");
}

// How a tensor's values are drawn.
struct Init {
  float center = 0.0f;
  float amplitude = 0.0f;  // uniform in [center - amplitude, center + amplitude)
};

// Uniform with standard deviation `std`: amplitude sqrt(3)·std.
Init UniformWithStd(double std) { return {0.0f, static_cast<float>(std::sqrt(3.0) * std)}; }

Init InitFor(const ShapeDef& s, const SafetensorsTensorSpec& t) {
  const bool is_norm = t.shape.size() == 1;
  if (is_norm) {
    // Gemma scales by (1 + w): small w around 0; Llama by w: around 1.
    return {s.family == Family::kLlama ? 1.0f : 0.0f, 0.05f};
  }
  if (t.name == "model.embed_tokens.weight" || t.name == "lm_head.weight") {
    return UniformWithStd(1.0 / std::sqrt(static_cast<double>(s.hidden)));
  }
  return UniformWithStd(1.0 / std::sqrt(static_cast<double>(t.shape[1])));  // fan_in
}

std::vector<SafetensorsTensorSpec> TensorsOf(const ShapeDef& s) {
  using V = std::vector<int64_t>;
  const int64_t d = s.hidden, q = int64_t{s.heads} * s.head_dim,
                kv = int64_t{s.kv_heads} * s.head_dim, f = s.intermediate;
  const bool gemma = s.family != Family::kLlama;
  std::vector<SafetensorsTensorSpec> out;
  auto add = [&](std::string name, V shape) {
    out.push_back({std::move(name), DType::kBF16, std::move(shape)});
  };
  add("model.embed_tokens.weight", {s.vocab, d});
  // Per layer, in the order the forward pass reads them.
  for (int i = 0; i < s.layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    add(p + "input_layernorm.weight", {d});
    add(p + "self_attn.q_proj.weight", {q, d});
    add(p + "self_attn.k_proj.weight", {kv, d});
    add(p + "self_attn.v_proj.weight", {kv, d});
    if (s.family == Family::kGemma3) {
      add(p + "self_attn.q_norm.weight", {s.head_dim});
      add(p + "self_attn.k_norm.weight", {s.head_dim});
    }
    add(p + "self_attn.o_proj.weight", {d, q});
    add(p + "post_attention_layernorm.weight", {d});
    if (gemma) add(p + "pre_feedforward_layernorm.weight", {d});
    add(p + "mlp.gate_proj.weight", {f, d});
    add(p + "mlp.up_proj.weight", {f, d});
    add(p + "mlp.down_proj.weight", {d, f});
    if (gemma) add(p + "post_feedforward_layernorm.weight", {d});
  }
  add("model.norm.weight", {d});
  if (!s.tied) add("lm_head.weight", {s.vocab, d});
  return out;
}

uint64_t Mix64(uint64_t z) {  // SplitMix64's finalizer
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t TensorKey(uint64_t seed, const std::string& name) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a of the name
  for (unsigned char c : name) h = (h ^ c) * 0x100000001b3ull;
  return Mix64(seed + 0x9e3779b97f4a7c15ull) ^ h;
}

// Bits 9..31 of a 32-bit draw as a float in [-1, 1).
inline float Signed01(uint32_t r) {
  return std::bit_cast<float>(0x3f800000u | (r >> 9)) * 2.0f - 3.0f;
}

std::string ShardName(size_t i, size_t n) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "model-%05zu-of-%05zu.safetensors", i + 1, n);
  return buf;
}

void WriteTextFile(const fs::path& path, const std::string& text) {
  const fs::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw Error("cannot create " + tmp.string());
    out << text;
    out.flush();
    if (!out) throw Error("cannot write " + tmp.string());
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec)
    throw Error("cannot rename " + tmp.string() + " to " + path.string() + ": " + ec.message());
}

}  // namespace

void FillRandomBF16(uint16_t* out, size_t count, uint64_t key, uint64_t first, float center,
                    float amplitude) {
  if (first % 2 != 0) throw Error("FillRandomBF16: first element index must be even");
  const uint64_t pair0 = first / 2;
  const size_t pairs = count / 2;
  for (size_t p = 0; p < pairs; ++p) {
    const uint64_t r = Mix64(key + (pair0 + p) * 0x9e3779b97f4a7c15ull);
    out[2 * p] = F32ToBF16(center + amplitude * Signed01(static_cast<uint32_t>(r)));
    out[2 * p + 1] = F32ToBF16(center + amplitude * Signed01(static_cast<uint32_t>(r >> 32)));
  }
  if (count % 2 != 0) {
    const uint64_t r = Mix64(key + (pair0 + pairs) * 0x9e3779b97f4a7c15ull);
    out[count - 1] = F32ToBF16(center + amplitude * Signed01(static_cast<uint32_t>(r)));
  }
}

std::vector<RandomModelShapeInfo> RandomModelShapes(bool include_test_only) {
  std::vector<RandomModelShapeInfo> out;
  for (const ShapeDef& s : kShapes) {
    if (s.test_only && !include_test_only) continue;
    RandomModelShapeInfo info;
    info.name = s.name;
    info.source = s.source;
    info.model_type = s.config(s)["model_type"].get<std::string>();
    for (const SafetensorsTensorSpec& t : TensorsOf(s)) {
      info.bytes += t.bytes();
      info.params += t.bytes() / 2;
    }
    info.test_only = s.test_only;
    out.push_back(std::move(info));
  }
  return out;
}

std::string RandomModelConfigJson(const std::string& shape, uint64_t seed) {
  const ShapeDef& s = FindShape(shape);
  ojson config = s.config(s);
  // Where it came from, in the key transformers itself uses for that.
  ojson out = {{"_name_or_path", "qlm random-model --shape " + std::string(s.name) + " --seed " +
                                     std::to_string(seed) + ": random weights in the shape of " +
                                     s.source}};
  out.update(config);
  return out.dump(2) + "\n";
}

std::vector<SafetensorsTensorSpec> RandomModelTensors(const std::string& shape) {
  return TensorsOf(FindShape(shape));
}

void WriteRandomModel(const RandomModelOptions& o) {
  const ShapeDef& s = FindShape(o.shape);
  std::error_code ec;
  if (o.tokenizer_path.empty() || !fs::is_regular_file(o.tokenizer_path, ec)) {
    throw Error("tokenizer " +
                (o.tokenizer_path.empty() ? std::string("(none given)") : o.tokenizer_path) +
                " not found: random-model copies a SentencePiece tokenizer.model into the model");
  }
  if (o.out_dir.empty()) throw UsageError("random-model: no output directory given");
  const fs::path dir(o.out_dir);
  if (fs::exists(dir, ec) && !fs::is_directory(dir, ec)) {
    throw Error(o.out_dir + " exists and is not a directory");
  }
  fs::create_directories(dir, ec);
  if (ec) throw Error("cannot create directory " + o.out_dir + ": " + ec.message());

  // An existing model is replaced only on request; its old shards go first
  // so a different shard count cannot leave strays behind.
  std::vector<fs::path> old;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string f = entry.path().filename().string();
    if (f == "config.json" || f == "model.safetensors.index.json" ||
        (f.starts_with("model") && f.ends_with(".safetensors"))) {
      old.push_back(entry.path());
    }
  }
  if (!old.empty()) {
    if (!o.overwrite) {
      throw Error(o.out_dir + " already holds a model (" + old.front().filename().string() +
                  "); remove it or pass --force to overwrite");
    }
    for (const fs::path& p : old) {
      fs::remove(p, ec);
      if (ec) throw Error("cannot remove " + p.string() + ": " + ec.message());
    }
  }

  const std::vector<SafetensorsTensorSpec> tensors = TensorsOf(s);

  // Greedy sharding in write order; a header is at most ~160 bytes per tensor
  // plus the metadata, so budget that against the file limit.
  std::vector<std::vector<size_t>> shards(1);
  uint64_t shard_bytes = 64;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const uint64_t need = tensors[i].bytes() + 160 + tensors[i].name.size();
    if (!shards.back().empty() && shard_bytes + need > o.max_shard_bytes) {
      shards.emplace_back();
      shard_bytes = 64;
    }
    shards.back().push_back(i);
    shard_bytes += need;
  }

  uint64_t total = 0;
  for (const auto& t : tensors) total += t.bytes();
  uint64_t done = 0;
  constexpr size_t kChunkElements = size_t{1} << 22;  // 8 MB of bf16 per write
  std::vector<uint16_t> buffer(kChunkElements);
  nlohmann::json weight_map = nlohmann::json::object();

  for (size_t si = 0; si < shards.size(); ++si) {
    const std::string file =
        shards.size() == 1 ? "model.safetensors" : ShardName(si, shards.size());
    SafetensorsWriter writer((dir / file).string());
    for (size_t i : shards[si]) writer.Declare(tensors[i].name, tensors[i].dtype, tensors[i].shape);
    for (size_t i : shards[si]) {
      const SafetensorsTensorSpec& t = tensors[i];
      const Init init = InitFor(s, t);
      const uint64_t key = TensorKey(o.seed, t.name);
      const uint64_t numel = t.bytes() / 2;
      for (uint64_t first = 0; first < numel; first += kChunkElements) {
        const size_t n = static_cast<size_t>(std::min<uint64_t>(kChunkElements, numel - first));
        FillRandomBF16(buffer.data(), n, key, first, init.center, init.amplitude);
        writer.Write(buffer.data(), n * sizeof(uint16_t));
        done += n * sizeof(uint16_t);
        if (o.progress) o.progress(done, total);
      }
      weight_map[t.name] = file;
    }
    writer.Finish();
  }

  if (shards.size() > 1) {
    const nlohmann::json index = {{"metadata", {{"total_size", total}}},
                                  {"weight_map", weight_map}};
    WriteTextFile(dir / "model.safetensors.index.json", index.dump(2) + "\n");
  }
  const fs::path tok = dir / "tokenizer.model";
  if (!fs::equivalent(o.tokenizer_path, tok, ec)) {
    fs::copy_file(o.tokenizer_path, tok, fs::copy_options::overwrite_existing, ec);
    if (ec)
      throw Error("cannot copy " + o.tokenizer_path + " to " + tok.string() + ": " + ec.message());
  }
  WriteTextFile(dir / "config.json", RandomModelConfigJson(s.name, o.seed));
}

}  // namespace qlm
