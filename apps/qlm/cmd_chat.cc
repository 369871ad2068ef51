// qlm chat: interactive multi-turn chat with the model's chat template.
//   qlm chat [-m MODEL] [-sys SYSTEM] [-n N] [sampling flags as qlm run]
// One user message per input line (works with piped stdin); the answer
// streams to stdout, everything else goes to stderr. The KV cache is kept
// across turns, so each turn prefills only its own tokens. Commands: /clear
// (forget the conversation), /exit. Ctrl-C stops the current answer; at the
// prompt, a second Ctrl-C quits.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "apps/qlm/commands.h"
#include "apps/qlm/load_model.h"
#include "apps/qlm/model_path.h"
#include "apps/qlm/quant_flags.h"
#include "apps/qlm/sampling_flags.h"
#include "apps/qlm/timings.h"
#include "base/error.h"
#include "core/chat_template.h"
#include "core/kv_cache.h"
#include "core/qlm.h"
#include "core/thread_pool.h"

namespace qlm::cli {
namespace {

struct ChatArgs {
  std::string model;
  std::string system;
  int n_predict = -1;
  SamplingFlags sampling;
  int threads = -1;
  size_t ctx = 4096;
  std::string kv_type = "f32";
  size_t batch = 64;
  bool mmap = false;
  std::string kernels;
  QuantFlags quant;
};

// SIGINT while answering stops the answer; at the prompt, the first one
// prints a hint and the second quits.
std::atomic<bool> g_answering{false};
std::atomic<bool> g_stop{false};
std::atomic<int> g_prompt_interrupts{0};

extern "C" void OnSigint(int) {
  if (g_answering.load()) {
    g_stop.store(true);
    return;
  }
  if (g_prompt_interrupts.fetch_add(1) >= 1) {
    static const char kBye[] = "\n";
    (void)!write(STDERR_FILENO, kBye, sizeof(kBye) - 1);
    _exit(130);
  }
  static const char kHint[] = "\n(Ctrl-C again or /exit to quit)\n> ";
  (void)!write(STDERR_FILENO, kHint, sizeof(kHint) - 1);
}

void InstallSigint() {
  struct sigaction sa = {};
  sa.sa_handler = OnSigint;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;  // getline keeps waiting at the prompt
  sigaction(SIGINT, &sa, nullptr);
}

double MsSince(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
}

void Chat(const ChatArgs& a) {
  const auto t_start = std::chrono::steady_clock::now();
  const SamplingParams sp = ResolveSamplingFlags(a.sampling);
  if (a.n_predict < -1) {
    throw UsageError("-n/--n-predict must be >= -1 (-1 = until the end of the turn), got " +
                     std::to_string(a.n_predict));
  }
  if (a.threads == 0 || a.threads < -1) {
    throw UsageError("-t/--threads must be >= 1 (or -1 for every physical core), got " +
                     std::to_string(a.threads));
  }
  if (a.batch == 0) throw UsageError("-b/--batch-size must be >= 1");
  LoadOptions lo;
  lo.mmap = a.mmap;
  lo.kernels = a.kernels;
  lo.quant = ParseQuantName(a.quant.quant, "--quant");
  lo.group_size = CheckGroupSize(a.quant.group_size, lo.quant);

  const std::string dir = ResolveModelDir(a.model);
  const Model model = LoadModelWithProgress(dir, lo);
  const ChatTemplate tmpl(model.tokenizer(), model.config().arch);
  SessionOptions so;
  so.context = a.ctx;
  so.batch = a.batch;
  so.threads = a.threads > 0 ? static_cast<size_t>(a.threads) : PhysicalCoreCount();
  so.kv_type = ParseKvType(a.kv_type);
  Session session(model, so);
  const ModelConfig& c = model.config();
  spdlog::info(
      "model {}: {} ({} layers, hidden {}), chat template {}, kernels {}, threads {}, "
      "context {}",
      dir, c.model_type, c.num_layers, c.hidden_size, tmpl.name(), model.isa(), session.threads(),
      session.context());
  const double load_ms = MsSince(t_start);
  GenerateStats all;  // summed over the turns

  GenerateParams gp;
  gp.sampling = sp;
  gp.max_tokens = a.n_predict;
  const bool interactive = isatty(fileno(stdin)) != 0;
  if (interactive) {
    spdlog::info(
        "type a message and press Enter; /clear forgets the conversation, /exit quits, "
        "Ctrl-C stops an answer");
  }
  InstallSigint();
  size_t turn = 0;
  std::string line;
  while (true) {
    if (interactive) {
      std::fputs("> ", stderr);
      std::fflush(stderr);
    }
    if (!std::getline(std::cin, line)) break;
    g_prompt_interrupts.store(0);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line == "/exit" || line == "/quit") break;
    if (line == "/clear") {
      session.Reset();
      spdlog::info("conversation cleared");
      continue;
    }
    if (line.empty()) continue;
    ++turn;
    const size_t before = session.position();
    const std::vector<int32_t> ids = tmpl.UserTurn(session.tokens(), a.system, line);
    if (session.tokens().size() + ids.size() > session.context()) {
      spdlog::error(
          "error: this message needs {} tokens but only {} of the {}-token context are "
          "left; type /clear to start over (or raise -c/--ctx-size)",
          ids.size(),
          session.tokens().size() >= session.context()
              ? size_t{0}
              : session.context() - session.tokens().size(),
          session.context());
      --turn;
      continue;
    }
    g_stop.store(false);
    g_answering.store(true);
    const GenerateStats st = session.Generate(ids, gp, [&](int32_t id, std::string_view text) {
      if (g_stop.load() || tmpl.IsEndOfTurn(id) || model.IsStop(id)) return false;
      std::fwrite(text.data(), 1, text.size(), stdout);
      std::fflush(stdout);
      return true;
    });
    g_answering.store(false);
    std::fputc('\n', stdout);
    std::fflush(stdout);
    if (g_stop.load()) spdlog::info("(answer stopped)");
    if (st.stop == StopReason::kContextFull) {
      spdlog::warn("warning: the context of {} tokens is full; type /clear to start over",
                   session.context());
    }
    // One line per turn that tests (and users) can read: how many tokens this
    // turn prefilled versus how many the KV cache already held.
    spdlog::info("turn {}: prefilled {} tokens with {} already cached; generated {}; context {}/{}",
                 turn, st.prompt_tokens, before, st.generated, session.position(),
                 session.context());
    spdlog::debug("turn {}: prompt eval {:.2f} ms, eval {:.2f} ms / {} runs", turn, st.prompt_ms,
                  st.decode_ms, st.decode_evals);
    all.prompt_tokens += st.prompt_tokens;
    all.generated += st.generated;
    all.decode_evals += st.decode_evals;
    all.prompt_ms += st.prompt_ms;
    all.decode_ms += st.decode_ms;
    all.sample_ms += st.sample_ms;
  }
  PrintTimings(load_ms, all, MsSince(t_start));
  PrintKvMemory(session);
}

}  // namespace

void AddChatCommand(CLI::App& app) {
  auto a = std::make_shared<ChatArgs>();
  CLI::App* cmd = app.add_subcommand(
      "chat",
      "Chat with an instruction-tuned model (one message per stdin line; answers on stdout)");
  cmd->add_option("-m,--model", a->model,
                  "Model directory (Hugging Face layout) or .qlm file; default: the built-in "
                  "Austen model");
  cmd->add_option("--system-prompt", a->system,
                  "System prompt (also -sys); Gemma has no system role, so it is prepended to the "
                  "first user message");
  cmd->add_option("-n,--n-predict", a->n_predict,
                  "Most tokens per answer (-1 = until the end of the turn or the context is full)")
      ->capture_default_str();
  AddSamplingFlags(cmd, a->sampling);
  cmd->add_option("-t,--threads", a->threads, "Threads (-1 = physical cores)")
      ->capture_default_str();
  cmd->add_option("--kv-type", a->kv_type, "KV cache storage: f32, bf16, int8 or sfp8")
      ->capture_default_str();
  cmd->add_option("-c,--ctx-size", a->ctx,
                  "Context size in tokens, shared by the whole conversation (0 = the model's "
                  "maximum)")
      ->capture_default_str();
  cmd->add_option("-b,--batch-size", a->batch, "Prompt tokens per forward batch")
      ->capture_default_str();
  AddMmapFlag(cmd, a->mmap);
  cmd->add_option("--kernels", a->kernels,
                  "Kernel table: scalar, avx2, avx512, neon (default: best for this CPU)");
  AddQuantFlags(cmd, a->quant);
  cmd->callback([a] { Chat(*a); });
}

}  // namespace qlm::cli
