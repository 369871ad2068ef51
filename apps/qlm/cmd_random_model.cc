// qlm random-model: writes a random-weight model of a real shape as a Hugging
// Face directory (loaders/random_model.h), so benchmarks need no downloads.
//   qlm random-model --list
//   qlm random-model --shape gemma-2-2b -o DIR [--seed S] [--force]
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "apps/qlm/commands.h"
#include "apps/qlm/progress.h"
#include "base/error.h"
#include "loaders/random_model.h"

namespace qlm::cli {
namespace {

namespace fs = std::filesystem;

struct RandomModelArgs {
  bool list = false;
  std::string shape;
  std::string out_dir;
  uint64_t seed = 0;
  bool force = false;
  std::string tokenizer;
};

// The built-in Austen model's tokenizer: next to the binary (build/bin/qlm or
// build/<preset>/bin/qlm -> <repo>/models) or in the source tree it was
// built from.
std::string FindBuiltinTokenizer() {
  const fs::path rel = fs::path("models") / "austen-gemma3" / "tokenizer.model";
  std::vector<fs::path> candidates;
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    candidates.push_back(exe.parent_path() / ".." / ".." / rel);
    candidates.push_back(exe.parent_path() / ".." / ".." / ".." / rel);
  }
  candidates.push_back(fs::path(QLM_SOURCE_DIR) / rel);
  std::string looked;
  for (const fs::path& c : candidates) {
    const fs::path p = c.lexically_normal();
    if (fs::is_regular_file(p, ec)) return p.string();
    looked += looked.empty() ? "" : ", ";
    looked += p.string();
  }
  throw Error("the built-in tokenizer was not found (looked for " + looked +
              "); pass --tokenizer FILE");
}

std::string HumanCount(uint64_t n) {
  char buf[32];
  if (n >= 1000000000) {
    std::snprintf(buf, sizeof(buf), "%.2f B", n / 1e9);
  } else {
    std::snprintf(buf, sizeof(buf), "%.1f M", n / 1e6);
  }
  return buf;
}

std::string HumanBytes(uint64_t n) {
  char buf[32];
  if (n >= 1000000000) {
    std::snprintf(buf, sizeof(buf), "%.2f GB", n / 1e9);
  } else {
    std::snprintf(buf, sizeof(buf), "%.1f MB", n / 1e6);
  }
  return buf;
}

void PrintList() {
  std::printf("%-14s %-12s %10s %11s  %s\n", "shape", "model_type", "params", "bf16 size",
              "mirrors");
  for (const RandomModelShapeInfo& s : RandomModelShapes(false)) {
    std::printf("%-14s %-12s %10s %11s  %s\n", s.name.c_str(), s.model_type.c_str(),
                HumanCount(s.params).c_str(), HumanBytes(s.bytes).c_str(), s.source.c_str());
  }
}

void Run(const RandomModelArgs& a) {
  if (a.list) {
    PrintList();
    return;
  }
  if (a.shape.empty()) throw UsageError("random-model: --shape is required (see --list)");
  if (a.out_dir.empty()) throw UsageError("random-model: -o DIR is required");

  RandomModelOptions o;
  o.shape = a.shape;
  o.out_dir = a.out_dir;
  o.seed = a.seed;
  o.overwrite = a.force;
  RandomModelConfigJson(a.shape);  // unknown shape: a usage error before any lookup
  o.tokenizer_path = a.tokenizer.empty() ? FindBuiltinTokenizer() : a.tokenizer;

  const auto start = std::chrono::steady_clock::now();
  std::optional<Progress> bar;
  o.progress = [&](uint64_t done, uint64_t total) {
    // Counted in MiB so the bar's "done/total" reads as sizes.
    constexpr uint64_t kMiB = uint64_t{1} << 20;
    if (!bar) bar.emplace("random-model " + a.shape + " (MiB)", (total + kMiB - 1) / kMiB);
    bar->Update(done == total ? (total + kMiB - 1) / kMiB : done / kMiB);
  };
  WriteRandomModel(o);
  if (bar) bar->Finish();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  for (const RandomModelShapeInfo& s : RandomModelShapes(true)) {
    if (s.name != a.shape) continue;
    std::fprintf(stderr, "wrote %s (%s params, %s bf16, seed %llu) to %s in %.1f s\n",
                 s.name.c_str(), HumanCount(s.params).c_str(), HumanBytes(s.bytes).c_str(),
                 static_cast<unsigned long long>(a.seed), a.out_dir.c_str(), seconds);
  }
}

}  // namespace

void AddRandomModelCommand(CLI::App& app) {
  auto args = std::make_shared<RandomModelArgs>();
  CLI::App* cmd = app.add_subcommand(
      "random-model",
      "Write a random-weight model of a real shape (config.json, bf16 safetensors, the Austen "
      "tokenizer) for benchmarks");
  CLI::Option* list = cmd->add_flag("--list", args->list, "List the shapes");
  cmd->add_option("--shape", args->shape,
                  "Shape to write (see --list; tiny-test, tiny-test-gemma2 and tiny-test-llama "
                  "are a few MB, for tests)")
      ->excludes(list);
  cmd->add_option("-o,--output", args->out_dir, "Output directory (created if absent)")
      ->excludes(list);
  cmd->add_option("--seed", args->seed, "Random seed (same seed, same bytes)")->excludes(list);
  cmd->add_flag("--force", args->force, "Replace a model already in the output directory")
      ->excludes(list);
  cmd->add_option("--tokenizer", args->tokenizer,
                  "tokenizer.model to copy in (default: the built-in Austen tokenizer)")
      ->excludes(list);
  cmd->callback([args] { Run(*args); });
}

}  // namespace qlm::cli
