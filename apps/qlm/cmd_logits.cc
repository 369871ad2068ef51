// qlm logits: run token ids from position 0 and write every position's logits.
//   qlm logits [-m DIR] --ids 2,651,8 -o out.f32 [--kernels ISA] [-t THREADS]
// Output: float32 little-endian, row-major [n_ids × vocab] — an exact
// contract tests and external checks rely on.
#include <spdlog/spdlog.h>

#include <bit>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "apps/qlm/commands.h"
#include "apps/qlm/load_model.h"
#include "apps/qlm/model_path.h"
#include "apps/qlm/quant_flags.h"
#include "base/error.h"
#include "core/qlm.h"
#include "core/thread_pool.h"

namespace qlm::cli {
namespace {

struct LogitsArgs {
  std::string model;
  std::string ids;
  std::string out;
  bool mmap = false;
  std::string kernels;
  int threads = 1;
  QuantFlags quant;
};

std::vector<int32_t> ParseIds(const std::string& text) {
  std::vector<int32_t> ids;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t end = text.find(',', pos);
    if (end == std::string::npos) end = text.size();
    size_t b = pos, e = end;
    while (b < e && std::isspace(static_cast<unsigned char>(text[b]))) ++b;
    while (e > b && std::isspace(static_cast<unsigned char>(text[e - 1]))) --e;
    int32_t v = 0;
    const auto r = std::from_chars(text.data() + b, text.data() + e, v);
    if (b == e || r.ec != std::errc() || r.ptr != text.data() + e) {
      throw UsageError("--ids: '" + text.substr(b, e - b) +
                       "' is not a token id (expected comma-separated integers, e.g. 2,651,8)");
    }
    ids.push_back(v);
    pos = end + 1;
  }
  return ids;
}

void Logits(const LogitsArgs& a) {
  const std::vector<int32_t> ids = ParseIds(a.ids);
  if (a.threads < 1)
    throw UsageError("-t/--threads must be >= 1, got " + std::to_string(a.threads));
  LoadOptions lo;
  lo.mmap = a.mmap;
  lo.kernels = a.kernels;
  ApplyQuantFlags(a.quant, lo);
  lo.threads = static_cast<size_t>(a.threads);
  const std::string dir = ResolveModelDir(a.model);
  const Model model = LoadModelWithProgress(dir, lo);
  const int vocab = model.config().vocab_size;
  for (const int32_t id : ids) {
    if (id < 0 || id >= vocab) {
      throw UsageError("--ids: token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                       std::to_string(vocab) + ") of " + dir);
    }
  }
  SessionOptions so;
  so.context = ids.size();  // exactly what the ids need, whatever the model's maximum
  so.threads = static_cast<size_t>(a.threads);
  Session session(model, so);
  const std::span<const float> logits = session.Forward(ids, /*all_logits=*/true);

  std::FILE* f = std::fopen(a.out.c_str(), "wb");
  if (f == nullptr) throw Error("cannot write " + a.out + ": " + std::strerror(errno));
  std::vector<float> le;
  const float* data = logits.data();
  if constexpr (std::endian::native != std::endian::little) {
    le.resize(logits.size());
    for (size_t i = 0; i < logits.size(); ++i) {
      le[i] = std::bit_cast<float>(__builtin_bswap32(std::bit_cast<uint32_t>(logits[i])));
    }
    data = le.data();
  }
  const size_t written = std::fwrite(data, sizeof(float), logits.size(), f);
  const bool closed = std::fclose(f) == 0;
  if (written != logits.size() || !closed) {
    throw Error("cannot write " + a.out + ": " + std::strerror(errno));
  }
  spdlog::info("wrote logits [{} x {}] (float32 little-endian) to {} (model {}, kernels {})",
               ids.size(), vocab, a.out, dir, model.isa());
}

}  // namespace

void AddLogitsCommand(CLI::App& app) {
  auto a = std::make_shared<LogitsArgs>();
  CLI::App* cmd = app.add_subcommand(
      "logits", "Write the logits of token ids run from position 0 (float32 LE, [n_ids x vocab])");
  cmd->add_option(
      "-m,--model", a->model,
      "Model: HF directory, AutoGPTQ directory or .qlm file; default: the built-in Austen model");
  cmd->add_option("--ids", a->ids, "Comma-separated token ids, e.g. 2,651,8")->required();
  cmd->add_option("-o,--output", a->out, "Output file")->required();
  AddQuantFlags(cmd, a->quant, /*head_quant=*/true);
  AddMmapFlag(cmd, a->mmap);
  cmd->add_option("--kernels", a->kernels,
                  "Kernel table: scalar, avx2, avx512, neon (default: best for this CPU)");
  cmd->add_option("-t,--threads", a->threads, "Threads")->capture_default_str();
  cmd->callback([a] { Logits(*a); });
}

}  // namespace qlm::cli
