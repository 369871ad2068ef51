#include "loaders/generation_config.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "base/error.h"
#include "loaders/json_fields.h"

namespace qlm {
namespace {

using json_fields::Fields;
using nlohmann::json;

constexpr const char* kFile = "generation_config.json";

std::optional<float> OptFloat(const Fields& f, const std::string& key) {
  const std::optional<double> v = f.NullableNumber(key, std::nullopt);
  if (!v) return std::nullopt;
  return f.ToFloat(key, *v);
}

GenerationConfig Parse(std::string_view text, const std::string& file) {
  json root;
  try {
    root = json::parse(text.begin(), text.end());
  } catch (const json::exception& e) {
    throw Error(file + " is not valid JSON: " + e.what());
  }
  const Fields f(root, file);
  GenerationConfig g;
  g.bos_token_id = f.NullableInt("bos_token_id", std::nullopt);
  g.eos_token_ids = f.IntOrIntList("eos_token_id", {});
  g.pad_token_id = f.NullableInt("pad_token_id", std::nullopt);
  if (!f.IsNullOrAbsent("do_sample")) g.do_sample = f.Bool("do_sample", false);
  g.temperature = OptFloat(f, "temperature");
  g.top_k = f.NullableInt("top_k", std::nullopt);
  g.top_p = OptFloat(f, "top_p");
  g.min_p = OptFloat(f, "min_p");
  g.repetition_penalty = OptFloat(f, "repetition_penalty");
  g.max_new_tokens = f.NullableInt("max_new_tokens", std::nullopt);

  for (int id : g.eos_token_ids) {
    if (id < 0) f.Fail("eos_token_id", "must not be negative");
  }
  if (g.temperature && *g.temperature < 0) f.Fail("temperature", "must not be negative");
  if (g.top_k && *g.top_k < 0) f.Fail("top_k", "must not be negative");
  if (g.top_p && (*g.top_p < 0 || *g.top_p > 1)) f.Fail("top_p", "must be in [0, 1]");
  if (g.min_p && (*g.min_p < 0 || *g.min_p > 1)) f.Fail("min_p", "must be in [0, 1]");
  if (g.repetition_penalty && *g.repetition_penalty <= 0) {
    f.Fail("repetition_penalty", "must be positive");
  }
  if (g.max_new_tokens && *g.max_new_tokens < 0) f.Fail("max_new_tokens", "must not be negative");
  return g;
}

}  // namespace

GenerationConfig ParseGenerationConfig(std::string_view json_text) {
  return Parse(json_text, kFile);
}

GenerationConfig ReadGenerationConfig(const std::string& dir) {
  const std::string path = (std::filesystem::path(dir) / kFile).string();
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return {};
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot open " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw Error("cannot read " + path);
  return Parse(ss.str(), path);
}

std::vector<int> StopTokenIds(const ModelConfig& model, const GenerationConfig& gen) {
  return gen.eos_token_ids.empty() ? model.eos_token_ids : gen.eos_token_ids;
}

}  // namespace qlm
