#include "core/model_source.h"

#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

#include "base/error.h"
#include "core/thread_pool.h"

namespace qlm {
namespace {

namespace fs = std::filesystem;

std::string ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot read " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw Error("cannot read " + path);
  return ss.str();
}

constexpr std::string_view kQweight = ".qweight";

// Repacks every GPTQ linear of the store (each "PREFIX.qweight") into q4.
void RepackAll(ModelSource& s, ThreadPool* pool) {
  std::vector<std::string> prefixes;
  for (const auto& [name, t] : s.store.tensors()) {
    if (name.size() > kQweight.size() && name.ends_with(kQweight)) {
      prefixes.push_back(name.substr(0, name.size() - kQweight.size()));
    }
  }
  if (prefixes.empty()) {
    throw Error(s.path + " says it is GPTQ-quantized but holds no *.qweight tensors");
  }
  s.owned.reserve(prefixes.size());
  for (const std::string& prefix : prefixes) {
    const GptqLinear in = FindGptqLinear(s.store, prefix);
    // AutoGPTQ: qweight [K/8, N]. The binder checks N and K against config.json.
    const std::vector<int64_t>& shape = in.qweight->shape;
    if (shape.size() != 2 || shape[0] <= 0 || shape[1] <= 0) {
      throw Error("GPTQ tensor " + prefix + ".qweight in " + s.path + " must be 2-D [in/8, out]");
    }
    const auto rows = static_cast<uint64_t>(shape[1]), cols = static_cast<uint64_t>(shape[0]) * 8;
    const GptqRepackPlan plan = PlanGptqRepack(in, *s.gptq, rows, cols);
    QuantizedTensor t = AllocateGptqRepacked(plan);
    if (pool != nullptr) {
      pool->ParallelFor(rows, 32,
                        [&](size_t b, size_t e, size_t) { RepackGptqRows(plan, b, e, t); });
    } else {
      RepackGptqRows(plan, 0, rows, t);
    }
    s.repacked_bytes += t.desc.total_bytes;
    s.prepared[prefix + ".weight"] = t.view();  // the blob never moves
    s.owned.push_back(std::move(t));
  }
}

}  // namespace

const char* ModelSourceKindName(ModelSource::Kind kind) {
  switch (kind) {
    case ModelSource::Kind::kHfDir:
      return "hf";
    case ModelSource::Kind::kGptqDir:
      return "gptq";
    case ModelSource::Kind::kQlmFile:
      return "qlm";
  }
  return "?";
}

ModelSource OpenModelSource(const std::string& path, const OpenSourceOptions& options) {
  std::error_code ec;
  if (!fs::exists(path, ec)) throw Error("model path " + path + " does not exist");
  ModelSource s;
  s.path = path;
  if (fs::is_regular_file(path, ec)) {
    if (!LooksLikeQlmFile(path)) {
      throw Error("model path " + path +
                  " is a file but not a .qlm file (expected a .qlm file or a Hugging Face model "
                  "directory)");
    }
    s.kind = ModelSource::Kind::kQlmFile;
    QlmReadOptions ro;
    ro.verify_checksums = options.verify_checksums;
    ro.file = options.files;
    s.qlm.emplace(QlmFile::Open(path, ro));
    const QlmContents& c = s.qlm->contents();
    s.config_json = c.metadata.config_json;
    s.generation_config_json = c.metadata.generation_config_json;
    s.recipe_json = c.metadata.recipe_json;
    s.tokenizer_proto = c.tokenizer_proto;
    if (s.tokenizer_proto.empty()) throw Error(path + " has no embedded tokenizer");
    for (const QlmTensorEntry& t : c.tensors) s.prepared.emplace(t.name, t.view);
    return s;
  }
  if (!fs::is_directory(path, ec)) throw Error("model path " + path + " is not a directory");
  const std::string config_path = (fs::path(path) / "config.json").string();
  if (!fs::exists(config_path, ec)) {
    throw Error("no config.json in " + path + ": not a Hugging Face model directory");
  }
  s.config_json = ReadText(config_path);
  const std::string gen_path = (fs::path(path) / "generation_config.json").string();
  if (fs::is_regular_file(gen_path, ec)) s.generation_config_json = ReadText(gen_path);
  s.tokenizer_path = (fs::path(path) / "tokenizer.model").string();
  const std::string qc_path = (fs::path(path) / "quantize_config.json").string();
  s.gptq = ParseGptqConfig(s.config_json, fs::is_regular_file(qc_path, ec) ? ReadText(qc_path) : "",
                           path);
  s.store = WeightStore::OpenHfDir(path, options.files);
  if (s.gptq) {
    s.kind = ModelSource::Kind::kGptqDir;
    RepackAll(s, options.pool);
  }
  return s;
}

}  // namespace qlm
