// qlm quantize: convert a model (Hugging Face directory, AutoGPTQ directory
// or .qlm file) into one .qlm file.
//   qlm quantize SRC OUT.qlm --quant q4|int8|sfp8|bf16|f32 [--method rtn|gptq]
//                [--calib FILE] [--calib-sequences N] [--calib-tokens T]
//                [--group-size G] [--sym] [--act-order] [-t THREADS] [--kernels ISA]
// Policy (docs/quantization.md): every 2-D weight (the linears, the
// embedding and the output head; a tied table once) goes to --quant, 1-D
// norm weights stay f32. --method gptq runs the GPTQ solver on the layer
// linears (core/gptq_model.h); the embedding/head are rounded to nearest.
// An AutoGPTQ source converted to q4 keeps its repacked codes exactly.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "apps/qlm/commands.h"
#include "apps/qlm/quant_flags.h"
#include "base/error.h"
#include "core/convert.h"
#include "core/gptq_model.h"
#include "core/model.h"
#include "core/model_source.h"
#include "core/thread_pool.h"
#include "core/tokenizer.h"
#include "kernels/registry.h"
#include "loaders/model_config.h"
#include "loaders/qlm_file.h"

namespace qlm::cli {
namespace {

namespace fs = std::filesystem;

struct QuantizeArgs {
  std::string src, out;
  QuantFlags quant;
  std::string method = "rtn";
  std::string calib;
  size_t calib_sequences = 128;
  size_t calib_tokens = 256;
  bool sym = false;
  bool act_order = false;
  int threads = -1;
  std::string kernels;
};

std::string ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot read " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The default calibration text: ../shared/corpus/train.txt beside the
// repository (found from the executable, then from the source tree).
std::string DefaultCalibrationFile() {
  const fs::path rel = fs::path("..") / "shared" / "corpus" / "train.txt";
  std::error_code ec;
  std::vector<fs::path> tried;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) tried.push_back((exe.parent_path() / ".." / ".." / rel).lexically_normal());
#ifdef QLM_SOURCE_DIR
  tried.push_back((fs::path(QLM_SOURCE_DIR) / rel).lexically_normal());
#endif
  for (const fs::path& p : tried) {
    if (fs::is_regular_file(p, ec)) return p.string();
  }
  std::string where;
  for (const fs::path& p : tried) where += (where.empty() ? "" : " and ") + p.string();
  throw UsageError("--method gptq needs calibration text: no --calib FILE given and the default (" +
                   where + ") is missing");
}

// Sort key that orders "model.layers.10" after "model.layers.9".
std::vector<std::pair<std::string, uint64_t>> NaturalKey(const std::string& s) {
  std::vector<std::pair<std::string, uint64_t>> key;
  size_t i = 0;
  while (i < s.size()) {
    size_t j = i;
    while (j < s.size() && !std::isdigit(static_cast<unsigned char>(s[j]))) ++j;
    uint64_t num = 0;
    size_t k = j;
    while (k < s.size() && std::isdigit(static_cast<unsigned char>(s[k])) && k - j < 18) {
      num = num * 10 + static_cast<uint64_t>(s[k] - '0');
      ++k;
    }
    key.emplace_back(s.substr(i, j - i), num);
    i = k;
  }
  return key;
}

// One tensor to write: where it comes from.
struct Item {
  std::string name;
  std::vector<int64_t> shape;
  const StoredTensor* stored = nullptr;
  const QTensor* prepared = nullptr;
};

bool IsGptqPart(const std::string& name) {
  for (const char* suffix : {".qweight", ".qzeros", ".scales", ".g_idx"}) {
    if (name.ends_with(suffix)) return true;
  }
  return false;
}

std::vector<Item> ListTensors(const ModelSource& s) {
  std::vector<Item> items;
  for (const auto& [name, view] : s.prepared) {
    Item it;
    it.name = name;
    it.prepared = &view;
    if (view.desc.rows == 1 && s.qlm) {
      it.shape = s.qlm->contents().Find(name)->shape;
    } else {
      it.shape = {static_cast<int64_t>(view.desc.rows), static_cast<int64_t>(view.desc.cols)};
    }
    items.push_back(std::move(it));
  }
  for (const auto& [name, t] : s.store.tensors()) {
    if (s.gptq && IsGptqPart(name)) continue;
    if (s.prepared.count(name) != 0) continue;
    if (t.dtype == DType::kI32) {
      throw Error("tensor " + name + " in " + s.path + " is I32; qlm quantize converts float tensors");
    }
    if (t.shape.empty() || t.shape.size() > 2 || t.numel() == 0) {
      throw Error("tensor " + name + " in " + s.path + " is not a vector or a matrix");
    }
    Item it;
    it.name = name;
    it.shape = t.shape;
    it.stored = &t;
    items.push_back(std::move(it));
  }
  std::sort(items.begin(), items.end(),
            [](const Item& a, const Item& b) { return NaturalKey(a.name) < NaturalKey(b.name); });
  return items;
}

std::string Bytes(double b) {
  const char* unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) {
    b /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), u == 0 ? "%.0f %s" : "%.2f %s", b, unit[u]);
  return buf;
}

// A per-tensor progress bar on a terminal, plain lines otherwise.
class Progress {
 public:
  explicit Progress(size_t total) : total_(total), tty_(isatty(fileno(stderr)) != 0) {}
  void Step(size_t i, const std::string& name, const std::string& what) {
    if (tty_) {
      constexpr int kWidth = 30;
      const int fill = static_cast<int>(kWidth * (i + 1) / total_);
      std::fprintf(stderr, "\r\033[K[%s%s] %zu/%zu %s %s", std::string(fill, '#').c_str(),
                   std::string(kWidth - fill, '.').c_str(), i + 1, total_, name.c_str(),
                   what.c_str());
      if (i + 1 == total_) std::fputc('\n', stderr);
      std::fflush(stderr);
    } else {
      std::fprintf(stderr, "[%zu/%zu] %s %s\n", i + 1, total_, name.c_str(), what.c_str());
    }
  }

 private:
  size_t total_;
  bool tty_;
};

void Quantize(const QuantizeArgs& a) {
  const auto t0 = std::chrono::steady_clock::now();
  const std::optional<Format> format = ParseQuantName(a.quant.quant, "--quant");
  if (!format) throw UsageError("qlm quantize needs --quant (f32, bf16, int8, q4, sfp8)");
  const uint32_t group = CheckGroupSize(a.quant.group_size, format);
  if (a.method != "rtn" && a.method != "gptq") {
    throw UsageError("--method must be rtn or gptq, got '" + a.method + "'");
  }
  const bool gptq = a.method == "gptq";
  if (gptq && *format != Format::kQ4) throw UsageError("--method gptq produces q4: use --quant q4");
  if (!gptq && (a.act_order || !a.calib.empty())) {
    throw UsageError("--act-order and --calib apply to --method gptq only");
  }
  if (a.sym && *format != Format::kQ4) throw UsageError("--sym applies to --quant q4 only");
  if (a.threads == 0 || a.threads < -1) {
    throw UsageError("-t/--threads must be >= 1 (or -1 for every physical core)");
  }
  if (a.out.empty()) throw UsageError("qlm quantize needs an output file");
  const size_t threads = a.threads > 0 ? static_cast<size_t>(a.threads) : PhysicalCoreCount();
  ThreadPool pool(threads);
  const kernels::KernelTable& table = kernels::SelectTable(a.kernels);
  const std::string calib_path = gptq ? (a.calib.empty() ? DefaultCalibrationFile() : a.calib) : "";

  OpenSourceOptions so;
  so.pool = &pool;
  ModelSource src = OpenModelSource(a.src, so);
  const ModelConfig config = ParseHfConfig(src.config_json);
  std::string proto;
  if (src.kind == ModelSource::Kind::kQlmFile) {
    proto = std::string(src.tokenizer_proto);
  } else {
    proto = ReadText(src.tokenizer_path);
  }
  const Tokenizer tokenizer = Tokenizer::FromSerializedProto(proto, a.src);
  spdlog::info("quantizing {} ({} source, {}) to {} as {}{}{}", a.src,
               ModelSourceKindName(src.kind), config.model_type, a.out, FormatName(*format),
               *format == Format::kQ4
                   ? " group " + std::to_string(group ? group : kQ4DefaultGroupSize) +
                         (a.sym ? " sym" : " asym")
                   : "",
               gptq ? std::string(", GPTQ") + (a.act_order ? " act-order" : "") : ", RTN");

  QuantizeOptions qo;
  qo.group_size = group;
  qo.asymmetric = !a.sym;

  // ---- GPTQ: the layer linears, from an f32 binding of the source.
  std::map<std::string, QuantizedTensor> solved;
  nlohmann::json calib_json = nullptr;
  if (gptq) {
    BindOptions bo;
    bo.quant = Format::kF32;
    bo.prepared = &src.prepared;
    bo.pool = &pool;
    const BoundWeights f32 = BindWeights(config, src.store, a.src, bo);
    CalibrationOptions co;
    co.sequences = a.calib_sequences;
    co.tokens = a.calib_tokens;
    const auto windows = SampleCalibrationWindows(tokenizer, ReadText(calib_path), co);
    GptqOptions go;
    go.group_size = group ? group : kQ4DefaultGroupSize;
    go.asymmetric = !a.sym;
    go.act_order = a.act_order;
    spdlog::info("GPTQ: {} calibration windows of {} tokens from {}, {} threads, kernels {}",
                 windows.size(), co.tokens, calib_path, threads, kernels::IsaName(table.isa));
    const size_t n_linears = config.num_layers * kLinearsPerLayer;
    Progress bar(n_linears);
    solved = GptqQuantizeModel(config, f32.w, table, windows, go, &pool,
                               [&](const GptqProgressInfo& p) {
                                 char what[96];
                                 std::snprintf(what, sizeof(what), "GPTQ loss %.4g (%.1f s)",
                                               p.stats.loss, p.seconds);
                                 bar.Step(p.done - 1, p.tensor, what);
                               });
    calib_json = {{"file", fs::path(calib_path).filename().string()},
                  {"sequences", co.sequences},
                  {"tokens", co.tokens},
                  {"seed", co.seed}};
    spdlog::info("GPTQ done in {:.1f} s",
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }

  // ---- Write every tensor.
  nlohmann::json recipe = {{"format", FormatName(*format)},
                           {"method", gptq ? "gptq" : "rtn"},
                           {"source", fs::path(a.src).filename().string()},
                           {"source_kind", ModelSourceKindName(src.kind)},
                           {"policy", "2-D weights (linears, embedding, head) in format; 1-D f32"}};
  if (*format == Format::kQ4) {
    recipe["group_size"] = group ? group : kQ4DefaultGroupSize;
    recipe["asymmetric"] = !a.sym;
  }
  if (gptq) {
    recipe["act_order"] = a.act_order;
    recipe["damp"] = 0.01;
    recipe["block_size"] = 128;
    recipe["calibration"] = calib_json;
  }
  if (src.gptq) recipe["gptq_import"] = {{"group_size", src.gptq->group_size}, {"sym", src.gptq->sym}};
  QlmFileMetadata meta;
  meta.config_json = src.config_json;
  meta.generation_config_json = src.generation_config_json;
  meta.recipe_json = recipe.dump();
  QlmFileWriter writer(a.out, meta, proto);

  const std::vector<Item> items = ListTensors(src);
  Progress bar(items.size());
  uint64_t matrix_weights = 0, matrix_bytes = 0, vector_bytes = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    const Item& it = items[i];
    const bool matrix = it.shape.size() == 2 && it.shape[0] > 1;
    const uint64_t rows = it.shape.size() == 2 ? static_cast<uint64_t>(it.shape[0]) : 1;
    const uint64_t cols = static_cast<uint64_t>(it.shape.back());
    const Format want = matrix ? *format : Format::kF32;
    std::string how;
    std::optional<QuantizedTensor> converted;
    const QTensor* view = nullptr;
    if (const auto s = solved.find(it.name); s != solved.end()) {
      view = nullptr;
      converted.emplace(std::move(s->second));
      how = "gptq";
    } else if (it.prepared != nullptr && it.prepared->desc.format == want &&
               (want != Format::kQ4 || group == 0 || it.prepared->desc.group_size == group)) {
      view = it.prepared;  // already in the wanted format: copied exactly
      how = src.gptq ? "gptq import" : "copy";
    } else {
      ConvertSource cs;
      cs.name = it.name;
      cs.rows = rows;
      cs.cols = cols;
      cs.stored = it.stored;
      cs.view = it.prepared;
      converted.emplace(ConvertTensor(cs, want, qo, &pool));
      how = "rtn";
    }
    const QTensor v = view ? *view : converted->view();
    writer.AddTensor(it.name, it.shape, v);
    if (matrix) {
      matrix_weights += rows * cols;
      matrix_bytes += v.desc.total_bytes;
    } else {
      vector_bytes += v.desc.total_bytes;
    }
    bar.Step(i, it.name,
             std::string(FormatName(v.desc.format)) + " " + how + " " + Bytes(v.desc.total_bytes));
    if (converted) converted.reset();
    if (const auto s = solved.find(it.name); s != solved.end()) solved.erase(s);
  }
  const uint64_t file_bytes = writer.Finish();
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("wrote %s: %s (%llu bytes), %zu tensors in %.1f s\n", a.out.c_str(),
              Bytes(static_cast<double>(file_bytes)).c_str(),
              static_cast<unsigned long long>(file_bytes), items.size(), secs);
  std::printf(
      "  weight matrices: %llu weights in %s = %.4f bits/weight (%s, codes + scales + zero points "
      "+ padding)\n",
      static_cast<unsigned long long>(matrix_weights), Bytes(static_cast<double>(matrix_bytes)).c_str(),
      matrix_weights ? 8.0 * static_cast<double>(matrix_bytes) / static_cast<double>(matrix_weights)
                     : 0.0,
      FormatName(*format));
  std::printf("  vectors (f32): %s; whole file: %.4f bits/weight\n",
              Bytes(static_cast<double>(vector_bytes)).c_str(),
              matrix_weights ? 8.0 * static_cast<double>(file_bytes) / static_cast<double>(matrix_weights)
                             : 0.0);
}

}  // namespace

void AddQuantizeCommand(CLI::App& app) {
  auto a = std::make_shared<QuantizeArgs>();
  CLI::App* cmd = app.add_subcommand(
      "quantize", "Convert a model (HF directory, AutoGPTQ directory or .qlm) to a .qlm file");
  cmd->add_option("source", a->src, "Source model: HF directory, AutoGPTQ directory or .qlm")
      ->required();
  cmd->add_option("output", a->out, "Output .qlm file")->required();
  cmd->add_option("--quant", a->quant.quant,
                  "Format of the weight matrices: f32, bf16, int8 (alias q8_0), q4, sfp8")
      ->required();
  cmd->add_option("--group-size", a->quant.group_size, "q4 group size: 32, 64 or 128 (default 128)");
  cmd->add_option("--method", a->method, "rtn (round to nearest) or gptq (needs calibration text)")
      ->capture_default_str();
  cmd->add_option("--calib", a->calib,
                  "GPTQ calibration text (default: ../shared/corpus/train.txt)");
  cmd->add_option("--calib-sequences", a->calib_sequences, "GPTQ calibration windows")
      ->capture_default_str();
  cmd->add_option("--calib-tokens", a->calib_tokens, "Tokens per calibration window")
      ->capture_default_str();
  cmd->add_flag("--sym", a->sym, "q4: symmetric (zero point 8) instead of asymmetric");
  cmd->add_flag("--act-order", a->act_order,
                "GPTQ: quantize inputs in order of decreasing activation energy (stored permuted)");
  cmd->add_option("-t,--threads", a->threads, "Threads (-1 = physical cores)")
      ->capture_default_str();
  cmd->add_option("--kernels", a->kernels,
                  "Kernel table for GPTQ's forward passes: scalar, avx2, avx512, neon");
  cmd->callback([a] { Quantize(*a); });
}

}  // namespace qlm::cli
