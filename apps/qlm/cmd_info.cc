// `qlm info [--kernels ISA] [--json]`: the CPU features the kernel registry
// sees, every kernel table compiled in and whether this CPU can run it, the
// table chosen (and why), and which ISA provides each op of it.
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "apps/qlm/commands.h"
#include "core/version.h"
#include "kernels/registry.h"

namespace qlm::cli {
namespace {

using kernels::Isa;
using kernels::KernelTable;
using kernels::Op;

// Whether the table has an implementation for `op` at all.
bool HasEntry(const KernelTable& t, Op op) {
  switch (op) {
    case Op::kMatmulF32:
      return t.matmul[static_cast<int>(Format::kF32)] != nullptr;
    case Op::kMatmulBF16:
      return t.matmul[static_cast<int>(Format::kBF16)] != nullptr;
    case Op::kMatmulInt8:
      return t.matmul[static_cast<int>(Format::kInt8)] != nullptr;
    case Op::kMatmulQ4:
      return t.matmul[static_cast<int>(Format::kQ4)] != nullptr;
    case Op::kMatmulSFP8:
      return t.matmul[static_cast<int>(Format::kSFP8)] != nullptr;
    case Op::kQuantizeActs:
      return t.quantize_acts != nullptr;
    case Op::kMatmulQ8Int8:
      return t.matmul_q8[static_cast<int>(Format::kInt8)] != nullptr;
    case Op::kMatmulQ8Q4:
      return t.matmul_q8[static_cast<int>(Format::kQ4)] != nullptr;
    case Op::kAttention:
      return t.attention != nullptr;
    case Op::kRmsNorm:
      return t.rmsnorm != nullptr;
    case Op::kRope:
      return t.rope != nullptr;
    case Op::kGeglu:
      return t.geglu != nullptr;
    case Op::kSwiglu:
      return t.swiglu != nullptr;
    case Op::kSoftmax:
      return t.softmax != nullptr;
    case Op::kAdd:
      return t.add != nullptr;
    case Op::kScale:
      return t.scale != nullptr;
    case Op::kSoftcap:
      return t.softcap != nullptr;
    case Op::kArgmax:
      return t.argmax != nullptr;
    case Op::kCount:
      break;
  }
  return false;
}

std::vector<std::string> SplitWords(const std::string& s) {
  std::vector<std::string> words;
  size_t i = 0;
  while (i < s.size()) {
    const size_t j = s.find(' ', i);
    const size_t end = j == std::string::npos ? s.size() : j;
    if (end > i) words.push_back(s.substr(i, end - i));
    i = end + 1;
  }
  return words;
}

}  // namespace

// The kernel part of `qlm info` as JSON. Selects the table exactly as the
// engine does (request, else QLM_KERNELS, else the best available ISA) and
// throws qlm::UsageError for an unknown or unavailable ISA.
nlohmann::ordered_json KernelInfo(const std::string& request) {
  const KernelTable& chosen = kernels::SelectTable(request);
  const char* env = std::getenv("QLM_KERNELS");
  std::string selected_by = "best available";
  if (!request.empty()) {
    selected_by = "--kernels";
  } else if (env != nullptr && *env != '\0') {
    selected_by = "QLM_KERNELS";
  }
  nlohmann::ordered_json j;
  j["cpu_features"] = SplitWords(kernels::CpuFeatureString());
  nlohmann::ordered_json tables = nlohmann::ordered_json::array();
  for (int i = 0; i < kernels::kNumIsas; ++i) {
    const Isa isa = static_cast<Isa>(i);
    tables.push_back({{"name", kernels::IsaName(isa)},
                      {"compiled_in", kernels::IsaCompiledIn(isa)},
                      {"available", kernels::IsaAvailable(isa)}});
  }
  j["tables"] = tables;
  j["best"] = kernels::IsaName(kernels::BestIsa());
  j["chosen"] = kernels::IsaName(chosen.isa);
  j["selected_by"] = selected_by;
  nlohmann::ordered_json ops = nlohmann::ordered_json::object();
  for (int i = 0; i < kernels::kNumOps; ++i) {
    const Op op = static_cast<Op>(i);
    ops[kernels::OpName(op)] =
        HasEntry(chosen, op) ? kernels::IsaName(chosen.provider[i]) : "missing";
  }
  j["ops"] = ops;
  return j;
}

// Human-readable rendering of KernelInfo().
void PrintKernelInfo(const nlohmann::ordered_json& k) {
  std::string features;
  for (const auto& f : k["cpu_features"]) features += " " + f.get<std::string>();
  std::printf("cpu features:%s\n", features.empty() ? " (none relevant)" : features.c_str());
  std::printf("kernel tables:\n");
  const std::string chosen = k["chosen"].get<std::string>();
  for (const auto& t : k["tables"]) {
    const std::string name = t["name"].get<std::string>();
    const char* state = !t["compiled_in"].get<bool>() ? "not compiled in (other processor family)"
                        : t["available"].get<bool>()  ? "available"
                                                      : "compiled in, CPU lacks it";
    std::printf("  %-7s %s%s\n", name.c_str(), state, name == chosen ? "  <- chosen" : "");
  }
  std::printf("chosen table: %s (by %s)\n", chosen.c_str(),
              k["selected_by"].get<std::string>().c_str());
  std::printf("ops (provided by):\n");
  for (const auto& [op, isa] : k["ops"].items()) {
    std::printf("  %-15s %s\n", op.c_str(), isa.get<std::string>().c_str());
  }
}

void AddInfoCommand(CLI::App& app) {
  CLI::App* info = app.add_subcommand("info", "Show CPU features, kernels and model summary");
  struct Options {
    std::string kernels;
    bool json = false;
  };
  auto opts = std::make_shared<Options>();
  info->add_option("--kernels", opts->kernels,
                   "Kernel table: scalar, avx2, avx512 or neon (default: QLM_KERNELS, else the "
                   "best this CPU supports)");
  info->add_flag("--json", opts->json, "Print machine-readable JSON");
  info->callback([opts] {
    const nlohmann::ordered_json k = KernelInfo(opts->kernels);
    if (opts->json) {
      nlohmann::ordered_json j;
      j["version"] = qlm::Version();
      j["kernels"] = k;
      std::printf("%s\n", j.dump(2).c_str());
      return;
    }
    std::printf("qlm %s\n", qlm::Version());
    PrintKernelInfo(k);
  });
}

}  // namespace qlm::cli
