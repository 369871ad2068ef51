// qlm quantize: convert a model (Hugging Face directory, AutoGPTQ directory
// or .qlm file) into one .qlm file.
//   qlm quantize SRC OUT.qlm --quant q4|int8|sfp8|bf16|f32 [--method rtn|gptq]
//                [--calib FILE] [--calib-sequences N] [--calib-tokens T]
//                [--group-size G] [--sym] [--act-order] [--damp F] [-t THREADS]
//                [--kernels ISA]
// Policy (docs/quantization.md): every 2-D weight (the linears, the
// embedding and the output head; a tied table once) goes to --quant, 1-D
// norm weights stay f32. --method gptq (q4 or sfp8) runs the GPTQ solver on
// the layer linears and the output head (core/gptq_model.h); the head is
// rounded to nearest instead with --head-rtn or a --head-quant other than
// --quant.
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
#include "apps/qlm/progress.h"
#include "apps/qlm/quant_flags.h"
#include "base/error.h"
#include "core/export_qlm.h"
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
  size_t calib_sequences = 64;
  size_t calib_tokens = 512;
  bool sym = false;
  bool act_order = false;
  bool clip_search = false;
  bool head_rtn = false;
  double damp = 0.01;
  bool damp_given = false;
  uint32_t refine_passes = 0;
  std::string head_quant;
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

void Quantize(const QuantizeArgs& a) {
  const auto t0 = std::chrono::steady_clock::now();
  const std::optional<Format> format = ParseQuantName(a.quant.quant, "--quant");
  if (!format) throw UsageError("qlm quantize needs --quant (f32, bf16, int8, q4, sfp8)");
  const std::optional<Format> head_format = ParseQuantName(a.head_quant, "--head-quant");
  const uint32_t group =
      CheckGroupSize(a.quant.group_size,
                     format == Format::kQ4 || head_format == Format::kQ4 ? Format::kQ4 : format);
  if (a.method != "rtn" && a.method != "gptq") {
    throw UsageError("--method must be rtn or gptq, got '" + a.method + "'");
  }
  const bool gptq = a.method == "gptq";
  if (gptq && *format != Format::kQ4 && *format != Format::kSFP8) {
    throw UsageError(std::string("--method gptq produces q4 or sfp8, not ") + FormatName(*format) +
                     ": use --quant q4 or --quant sfp8");
  }
  if (!gptq && (a.act_order || a.clip_search || a.head_rtn || !a.calib.empty() || a.damp_given ||
                a.refine_passes > 0)) {
    throw UsageError(
        "--act-order, --clip-search, --head-rtn, --damp, --refine-passes and --calib apply to "
        "--method gptq only");
  }
  if (a.clip_search && *format != Format::kQ4) {
    throw UsageError("--clip-search searches q4 group ranges: it applies to --quant q4 only");
  }
  if (!(a.damp > 0.0 && a.damp <= 1.0)) {
    std::ostringstream got;
    got << a.damp;
    throw UsageError("--damp must be in (0, 1] (a fraction of mean(diag H)), got " + got.str());
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
    go.format = *format;
    go.damp = a.damp;
    go.group_size = group ? group : kQ4DefaultGroupSize;
    go.asymmetric = !a.sym;
    go.act_order = a.act_order;
    go.clip_search = a.clip_search;
    go.refine_passes = a.refine_passes;
    spdlog::info(
        "GPTQ: {} calibration windows of {} tokens from {}, damping {}, {} threads, kernels {}",
        windows.size(), co.tokens, calib_path, a.damp, threads, kernels::IsaName(table.isa));
    const bool head_gptq = !a.head_rtn && (!head_format || *head_format == *format);
    const size_t n_linears = config.num_layers * kLinearsPerLayer + (head_gptq ? 1 : 0);
    Progress bar("GPTQ", n_linears, 0.0, Progress::kEveryStep);
    solved = GptqQuantizeModel(
        config, f32.w, table, windows, go, head_gptq, &pool, [&](const GptqProgressInfo& p) {
          char what[96];
          std::snprintf(what, sizeof(what), " loss %.4g (%.1f s)", p.stats.loss, p.seconds);
          bar.Update(p.done, p.tensor + what);
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
  if (head_format) recipe["head_format"] = FormatName(*head_format);
  if (*format == Format::kQ4) {
    recipe["group_size"] = group ? group : kQ4DefaultGroupSize;
    recipe["asymmetric"] = !a.sym;
  }
  if (gptq) {
    recipe["act_order"] = a.act_order;
    recipe["clip_search"] = a.clip_search;
    recipe["head"] = a.head_rtn || (head_format && *head_format != *format) ? "rtn" : "gptq";
    recipe["damp"] = a.damp;
    if (a.refine_passes > 0) recipe["refine_passes"] = a.refine_passes;
    recipe["block_size"] = 128;
    recipe["calibration"] = calib_json;
  }
  if (src.gptq)
    recipe["gptq_import"] = {{"group_size", src.gptq->group_size}, {"sym", src.gptq->sym}};
  ExportOptions eo;
  eo.format = *format;
  eo.head_format = head_format;
  eo.quantize = qo;
  eo.recipe_json = recipe.dump();
  eo.pool = &pool;
  eo.solved = &solved;
  std::optional<Progress> bar;
  const ExportSummary sum = ExportQlm(src, proto, a.out, eo, [&](const ExportedTensor& t) {
    if (!bar) bar.emplace("writing", t.total, 0.0, Progress::kEveryStep);
    bar->Update(t.index + 1,
                t.name + " " + FormatName(t.format) + " " + t.how + " " + Bytes(double(t.bytes)));
  });
  if (bar) bar->Finish();
  const uint64_t file_bytes = sum.file_bytes;
  const uint64_t matrix_weights = sum.matrix_weights, matrix_bytes = sum.matrix_bytes,
                 vector_bytes = sum.vector_bytes;
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("wrote %s: %s (%llu bytes), %zu tensors in %.1f s\n", a.out.c_str(),
              Bytes(static_cast<double>(file_bytes)).c_str(),
              static_cast<unsigned long long>(file_bytes), sum.tensors, secs);
  std::printf(
      "  weight matrices: %llu weights in %s = %.4f bits/weight (%s, codes + scales + zero points "
      "+ padding)\n",
      static_cast<unsigned long long>(matrix_weights),
      Bytes(static_cast<double>(matrix_bytes)).c_str(),
      matrix_weights ? 8.0 * static_cast<double>(matrix_bytes) / static_cast<double>(matrix_weights)
                     : 0.0,
      FormatName(*format));
  std::printf("  vectors (f32): %s; whole file: %.4f bits/weight\n",
              Bytes(static_cast<double>(vector_bytes)).c_str(),
              matrix_weights
                  ? 8.0 * static_cast<double>(file_bytes) / static_cast<double>(matrix_weights)
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
  cmd->add_option("--group-size", a->quant.group_size,
                  "q4 group size: 32, 64 or 128 (default 128)");
  cmd->add_option("--method", a->method,
                  "rtn (round to nearest) or gptq (for q4 or sfp8; needs calibration text)")
      ->capture_default_str();
  cmd->add_option("--calib", a->calib,
                  "GPTQ calibration text (default: ../shared/corpus/train.txt)");
  cmd->add_option("--calib-sequences", a->calib_sequences, "GPTQ calibration windows")
      ->capture_default_str();
  cmd->add_option("--calib-tokens", a->calib_tokens, "Tokens per calibration window")
      ->capture_default_str();
  cmd->add_flag("--sym", a->sym, "q4: symmetric (zero point 8) instead of asymmetric");
  cmd->add_flag("--act-order", a->act_order,
                "GPTQ: quantize inputs in order of decreasing activation energy (q4 stores them "
                "permuted)");
  cmd->add_option("--head-quant", a->head_quant,
                  "Format of the embedding and output head (default: --quant), e.g. int8 or f32 "
                  "for a higher-precision head");
  cmd->add_flag("--clip-search", a->clip_search,
                "GPTQ, q4 only: search each group's range (shrink 1..0.21) for the least error "
                "instead of plain min/max");
  cmd->add_flag("--head-rtn", a->head_rtn,
                "GPTQ: round the output head (tied embedding) to nearest instead of GPTQ");
  cmd->add_option("--damp", a->damp,
                  "GPTQ: damping added to H's diagonal, as a fraction of its mean")
      ->capture_default_str();
  cmd->add_option("--refine-passes", a->refine_passes,
                  "GPTQ: coordinate-descent sweeps per row after GPTQ, re-rounding each weight "
                  "on its grid to lower the output error (0 = off)")
      ->capture_default_str();
  cmd->add_option("-t,--threads", a->threads, "Threads (-1 = physical cores)")
      ->capture_default_str();
  cmd->add_option("--kernels", a->kernels,
                  "Kernel table for GPTQ's forward passes: scalar, avx2, avx512, neon");
  cmd->callback([a, cmd] {
    a->damp_given = cmd->count("--damp") > 0;
    Quantize(*a);
  });
}

}  // namespace qlm::cli
