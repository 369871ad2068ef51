// qlm run: generate text from a prompt, streaming it to stdout; logs and the
// timing summary go to stderr.
//   qlm run [-m DIR] -p PROMPT [-n N] [--temp T] [--top-k K] [--top-p P]
//           [--min-p M] [--repeat-penalty R] [--repeat-last-n N] [-s SEED]
//           [-t THREADS] [-c CTX] [-b BATCH] [--kernels ISA] [--kv-type T]
//           [--context-shift [--keep N]] [--ignore-eos] [--prompt-cache FILE]
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include "apps/qlm/commands.h"
#include "apps/qlm/load_model.h"
#include "apps/qlm/model_path.h"
#include "apps/qlm/quant_flags.h"
#include "apps/qlm/sampling_flags.h"
#include "apps/qlm/timings.h"
#include "base/error.h"
#include "core/kv_cache.h"
#include "core/qlm.h"
#include "core/thread_pool.h"

namespace qlm::cli {
namespace {

struct RunArgs {
  std::string model;
  std::string prompt;
  std::string prompt_file;
  int n_predict = 128;
  SamplingFlags sampling;
  int threads = -1;  // -1 = physical cores
  size_t ctx = 0;
  size_t batch = 64;
  bool mmap = false;
  std::string kernels;
  QuantFlags quant;
  bool verify = false;
  std::string kv_type = "f32";
  bool context_shift = false;
  size_t keep = 4;
  bool ignore_eos = false;
  std::string prompt_cache;
};

void Run(const RunArgs& a) {
  const auto t_start = std::chrono::steady_clock::now();
  // Parameters first: a bad value fails before the model is loaded.
  const SamplingParams sp = ResolveSamplingFlags(a.sampling);
  if (a.n_predict < -1) {
    throw UsageError("-n/--n-predict must be >= -1 (-1 = until end of text), got " +
                     std::to_string(a.n_predict));
  }
  if (a.threads == 0 || a.threads < -1) {
    throw UsageError("-t/--threads must be >= 1 (or -1 for every physical core), got " +
                     std::to_string(a.threads));
  }
  if (a.batch == 0) throw UsageError("-b/--batch-size must be >= 1");
  ParseKvType(a.kv_type);  // fail before loading
  std::string prompt = a.prompt;
  if (!a.prompt_file.empty()) {
    std::ifstream in(a.prompt_file, std::ios::binary);
    if (!in) throw Error("cannot read prompt file " + a.prompt_file);
    std::ostringstream ss;
    ss << in.rdbuf();
    prompt = ss.str();
  }

  LoadOptions lo;
  lo.mmap = a.mmap;
  lo.kernels = a.kernels;
  ApplyQuantFlags(a.quant, lo);
  lo.verify_checksums = a.verify;
  lo.threads = a.threads > 0 ? static_cast<size_t>(a.threads) : 0;
  const std::string dir = ResolveModelDir(a.model);
  const Model model = LoadModelWithProgress(dir, lo);
  SessionOptions so;
  so.context = a.ctx;
  so.batch = a.batch;
  so.threads = a.threads > 0 ? static_cast<size_t>(a.threads) : PhysicalCoreCount();
  so.kv_type = ParseKvType(a.kv_type);
  so.context_shift = a.context_shift;
  so.keep = a.keep;
  Session session(model, so);
  const double load_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t_start).count();
  const std::vector<int> prompt_ids = model.tokenizer().Encode(prompt, /*add_bos=*/true);
  if (prompt_ids.size() > session.context()) {
    throw UsageError("the prompt is " + std::to_string(prompt_ids.size()) +
                     " tokens but the context holds " + std::to_string(session.context()) +
                     " (raise -c/--ctx-size)");
  }
  const ModelConfig& c = model.config();
  spdlog::info("model {}: {} ({} layers, hidden {}, vocab {}), kernels {}, threads {}, context {}",
               dir, c.model_type, c.num_layers, c.hidden_size, c.vocab_size, model.isa(),
               session.threads(), session.context());
  spdlog::info("sampling: temp {} top-k {} top-p {} min-p {} repeat-penalty {} (last {}), seed {}",
               sp.temperature, sp.top_k, sp.top_p, sp.min_p, sp.repeat_penalty, sp.repeat_last_n,
               sp.seed);

  GenerateParams gp;
  gp.sampling = sp;
  gp.max_tokens = a.n_predict;
  gp.stop_at_eos = !a.ignore_eos;
  const std::vector<int32_t> ids(prompt_ids.begin(), prompt_ids.end());
  std::span<const int32_t> to_generate(ids);
  if (!a.prompt_cache.empty() && ids.size() >= 2) {
    // The cache holds every prompt token but the last, whose logits start
    // generation: load what matches, evaluate the rest, save, go on.
    const auto t0 = std::chrono::steady_clock::now();
    const std::span<const int32_t> prefix(ids.data(), ids.size() - 1);
    std::string why;
    const size_t restored = session.LoadPromptCache(a.prompt_cache, prefix, &why);
    if (restored > 0) {
      spdlog::info("prompt cache {}: restored {} of {} prompt tokens", a.prompt_cache, restored,
                   ids.size());
    } else if (!std::filesystem::exists(a.prompt_cache)) {
      spdlog::info("prompt cache {}: no file yet, it will be created", a.prompt_cache);
    } else {
      spdlog::warn("warning: prompt cache not used: {}; evaluating the whole prompt", why);
    }
    if (restored < prefix.size()) {
      session.Forward(prefix.subspan(restored));
      session.SavePromptCache(a.prompt_cache);
      spdlog::info("prompt cache {}: saved {} tokens", a.prompt_cache, prefix.size());
    }
    spdlog::info(
        "prompt cache time = {:.2f} ms",
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    to_generate = std::span<const int32_t>(ids).last(1);
  }
  const GenerateStats st = session.Generate(to_generate, gp, [](int32_t, std::string_view text) {
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
    return true;
  });
  if (isatty(fileno(stdout))) std::fputc('\n', stdout);
  std::fflush(stdout);
  const double total_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t_start).count();
  if (st.stop == StopReason::kContextFull) {
    spdlog::warn("warning: stopped: the context of {} tokens is full", session.context());
  }
  PrintTimings(load_ms, st, total_ms);
  PrintKvMemory(session);
  if (st.context_shifts > 0) {
    spdlog::info("context shifts   = {:10} (keep {}, {} tokens generated in a context of {})",
                 st.context_shifts, a.keep, st.generated, session.context());
  }
}

}  // namespace

void AddRunCommand(CLI::App& app) {
  auto a = std::make_shared<RunArgs>();
  CLI::App* cmd = app.add_subcommand("run", "Generate text from a prompt (text on stdout)");
  cmd->add_option(
      "-m,--model", a->model,
      "Model: HF directory, AutoGPTQ directory or .qlm file; default: the built-in Austen model");
  auto* p = cmd->add_option("-p,--prompt", a->prompt, "Prompt text");
  auto* f = cmd->add_option("-f,--file", a->prompt_file, "Read the prompt from this file");
  p->excludes(f);
  cmd->add_option("-n,--n-predict", a->n_predict,
                  "Tokens to generate (-1 = until end of text or the context is full)")
      ->capture_default_str();
  AddSamplingFlags(cmd, a->sampling);
  cmd->add_option("-t,--threads", a->threads, "Threads (-1 = physical cores)")
      ->capture_default_str();
  cmd->add_option("-c,--ctx-size", a->ctx, "Context size in tokens (0 = the model's maximum)")
      ->capture_default_str();
  cmd->add_option("-b,--batch-size", a->batch, "Prompt tokens per forward batch")
      ->capture_default_str();
  cmd->add_option("--kv-type", a->kv_type, "KV cache storage: f32, bf16, int8 or sfp8")
      ->capture_default_str();
  cmd->add_flag("--context-shift", a->context_shift,
                "When the context is full, keep the first --keep tokens, drop the oldest half of "
                "the rest and go on (so -n -1 can generate indefinitely in flat memory)");
  cmd->add_option("--keep", a->keep,
                  "Tokens kept at the start on a context shift (attention sinks)")
      ->capture_default_str();
  cmd->add_flag("--ignore-eos", a->ignore_eos, "Do not stop at end-of-text tokens");
  cmd->add_option(
      "--prompt-cache", a->prompt_cache,
      "Save the prompt's KV cache to FILE after prefill, and reuse it when a later run's "
      "prompt starts with the same tokens (same model, --kv-type and -c)");
  AddQuantFlags(cmd, a->quant, /*head_quant=*/true);
  cmd->add_flag("--verify", a->verify, ".qlm files: check every tensor's checksum while loading");
  AddMmapFlag(cmd, a->mmap);
  cmd->add_option("--kernels", a->kernels,
                  "Kernel table: scalar, avx2, avx512, neon (default: best for this CPU)");
  cmd->callback([a] {
    if (a->prompt.empty() && a->prompt_file.empty()) {
      throw UsageError("qlm run needs a prompt: -p TEXT or -f FILE");
    }
    Run(*a);
  });
}

}  // namespace qlm::cli
