// qlm perplexity: perplexity of a model over a text and, against a base,
// the KL divergence of its next-token distributions (core/perplexity.h).
//   qlm perplexity [-m MODEL] [--quant Q] -f TEXT [-c CTX] [--kld-against BASE]
//                  [--chunks N] [-t THREADS] [-b BATCH] [--json]
// BASE is a format name (MODEL loaded in that format, e.g. f32) or another
// model path (HF directory, AutoGPTQ directory or .qlm) with the same
// tokenizer. Results go to stdout (one JSON object with --json), progress to
// stderr.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "apps/qlm/commands.h"
#include "apps/qlm/load_model.h"
#include "apps/qlm/model_path.h"
#include "apps/qlm/quant_flags.h"
#include "base/error.h"
#include "core/kv_cache.h"
#include "core/perplexity.h"
#include "core/qlm.h"
#include "core/thread_pool.h"

namespace qlm::cli {
namespace {

struct PerplexityArgs {
  std::string model;
  QuantFlags quant;
  std::string text_file;
  size_t ctx = 512;
  size_t batch = 512;
  size_t chunks = 0;
  int threads = -1;
  std::string base;
  std::string kv_type = "f32";
  bool json = false;
  bool verify = false;
  bool mmap = false;
  std::string kernels;
};

std::string ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot read text file " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void Perplexity(const PerplexityArgs& a) {
  if (a.ctx < 4) throw UsageError("-c/--ctx-size must be at least 4, got " + std::to_string(a.ctx));
  if (a.batch == 0) throw UsageError("-b/--batch-size must be >= 1");
  if (a.threads == 0 || a.threads < -1) {
    throw UsageError("-t/--threads must be >= 1 (or -1 for every physical core)");
  }
  LoadOptions lo;
  lo.mmap = a.mmap;
  lo.kernels = a.kernels;
  ApplyQuantFlags(a.quant, lo);
  lo.verify_checksums = a.verify;
  lo.threads = a.threads > 0 ? static_cast<size_t>(a.threads) : 0;
  // BASE: a format name, or a path.
  std::optional<Format> base_format;
  bool base_is_format = false;
  if (!a.base.empty()) {
    try {
      base_format = ParseQuantName(a.base, "--kld-against");
      base_is_format = true;
    } catch (const UsageError&) {
      base_is_format = false;
    }
  }
  const std::string text = ReadText(a.text_file);
  const std::string path = ResolveModelDir(a.model);

  const auto t0 = std::chrono::steady_clock::now();
  const Model model = LoadModelWithProgress(path, lo);
  std::optional<Model> base;
  std::string base_name;
  if (base_is_format) {
    LoadOptions blo;
    blo.kernels = a.kernels;
    blo.threads = lo.threads;
    blo.mmap = lo.mmap;
    blo.quant = base_format;
    base.emplace(LoadModelWithProgress(path, blo));
    base_name = path + " as " + a.base;
  } else if (!a.base.empty()) {
    LoadOptions blo;
    blo.kernels = a.kernels;
    blo.threads = lo.threads;
    blo.mmap = lo.mmap;
    base.emplace(LoadModelWithProgress(a.base, blo));
    base_name = a.base;
  }
  const double load_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  const std::vector<int> ids = model.tokenizer().Encode(text, /*add_bos=*/true);
  const std::vector<int32_t> ids32(ids.begin(), ids.end());
  if (ids32.size() < a.ctx) {
    throw UsageError("the text has " + std::to_string(ids32.size()) +
                     " tokens, fewer than one window of " + std::to_string(a.ctx) +
                     " (lower -c/--ctx-size)");
  }
  PerplexityOptions po;
  po.context = a.ctx;
  po.batch = a.batch;
  po.threads = a.threads > 0 ? static_cast<size_t>(a.threads) : PhysicalCoreCount();
  po.max_windows = a.chunks;
  po.kv_type = ParseKvType(a.kv_type);
  spdlog::info("perplexity of {} ({}{}, KV {}) over {} ({} tokens), windows of {}{}", path,
               model.isa(), lo.quant ? std::string(", ") + FormatName(*lo.quant) : "", a.kv_type,
               a.text_file, ids.size(), a.ctx, base ? ", KL divergence against " + base_name : "");
  const bool tty = isatty(fileno(stderr)) != 0;
  const auto t1 = std::chrono::steady_clock::now();
  const PerplexityResult r = EvaluatePerplexity(
      model, base ? &*base : nullptr, ids32, po, [&](size_t done, size_t total, double ppl) {
        if (tty) {
          std::fprintf(stderr, "\r[%zu/%zu] ppl %.4f", done, total, ppl);
          if (done == total) std::fputc('\n', stderr);
        }
      });
  const double eval_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();

  if (a.json) {
    nlohmann::json j;
    j["ppl"] = r.ppl;
    j["tokens"] = r.tokens;
    j["kld_mean"] = r.kld_mean ? nlohmann::json(*r.kld_mean) : nlohmann::json(nullptr);
    j["kld_p99"] = r.kld_p99 ? nlohmann::json(*r.kld_p99) : nlohmann::json(nullptr);
    j["top1_agreement"] =
        r.top1_agreement ? nlohmann::json(*r.top1_agreement) : nlohmann::json(nullptr);
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("perplexity: %.4f over %zu tokens (%zu windows of %zu, second half scored)\n",
                r.ppl, r.tokens, r.windows, a.ctx);
    if (base) {
      std::printf(
          "KL divergence vs %s: mean %.6f, p99 %.6f; top-1 agreement %.3f %% (base ppl %.4f)\n",
          base_name.c_str(), *r.kld_mean, *r.kld_p99, 100.0 * *r.top1_agreement, r.base_ppl);
    }
  }
  spdlog::info("load {:.2f} s, evaluation {:.2f} s ({:.0f} tokens/s per model)", load_s, eval_s,
               static_cast<double>(r.windows * a.ctx) / eval_s);
}

}  // namespace

void AddPerplexityCommand(CLI::App& app) {
  auto a = std::make_shared<PerplexityArgs>();
  CLI::App* cmd = app.add_subcommand(
      "perplexity", "Perplexity over a text, and KL divergence against a base model");
  cmd->add_option("-m,--model", a->model,
                  "Model: HF directory, AutoGPTQ directory or .qlm file; default: the built-in "
                  "Austen model");
  AddQuantFlags(cmd, a->quant, /*head_quant=*/true);
  cmd->add_flag("--verify", a->verify, ".qlm files: check every tensor's checksum while loading");
  cmd->add_option("-f,--file", a->text_file, "Text file to score")->required();
  cmd->add_option("-c,--ctx-size", a->ctx, "Window length in tokens (second half scored)")
      ->capture_default_str();
  cmd->add_option("-b,--batch-size", a->batch, "Tokens per forward batch")->capture_default_str();
  cmd->add_option("--chunks", a->chunks, "Score at most this many windows (0 = all)")
      ->capture_default_str();
  cmd->add_option("-t,--threads", a->threads, "Threads (-1 = physical cores)")
      ->capture_default_str();
  cmd->add_option("--kv-type", a->kv_type,
                  "KV cache storage of MODEL: f32, bf16, int8 or sfp8 (the --kld-against base "
                  "always uses f32, so `--kv-type int8 --kld-against f32` measures the KV "
                  "quantization alone)")
      ->capture_default_str();
  cmd->add_option("--kld-against", a->base,
                  "Base for KL divergence: a format (f32, bf16, int8, q4, sfp8: this model loaded "
                  "that way) or another model path with the same tokenizer");
  cmd->add_flag("--json", a->json,
                "Print one JSON object: ppl, kld_mean, kld_p99, top1_agreement, tokens");
  AddMmapFlag(cmd, a->mmap);
  cmd->add_option("--kernels", a->kernels,
                  "Kernel table: scalar, avx2, avx512, neon (default: best for this CPU)");
  cmd->callback([a] { Perplexity(*a); });
}

}  // namespace qlm::cli
