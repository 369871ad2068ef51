#include "apps/qlm/quant_flags.h"

#include "base/error.h"

namespace qlm::cli {

std::optional<Format> ParseQuantName(const std::string& name, const std::string& flag) {
  if (name.empty()) return std::nullopt;
  if (name == "q8_0") return Format::kInt8;  // the same layout: 32 int8 codes + an f16 scale
  if (const std::optional<Format> f = ParseFormat(name)) return f;
  throw UsageError(flag + ": unknown format '" + name +
                   "' (expected f32, bf16, int8, q4, sfp8, or the alias q8_0)");
}

uint32_t CheckGroupSize(uint32_t group_size, std::optional<Format> format) {
  if (group_size == 0) return 0;
  if (group_size != 32 && group_size != 64 && group_size != 128) {
    throw UsageError("--group-size must be 32, 64 or 128, got " + std::to_string(group_size));
  }
  if (format != Format::kQ4) {
    throw UsageError("--group-size applies to --quant q4 only (int8 always uses groups of 32)");
  }
  return group_size;
}

void AddQuantFlags(CLI::App* cmd, QuantFlags& flags, bool head_quant) {
  cmd->add_option("--quant", flags.quant, kQuantHelp);
  cmd->add_option("--group-size", flags.group_size, "q4 group size: 32, 64 or 128 (default 128)");
  if (head_quant) {
    cmd->add_option("--head-quant", flags.head_quant,
                    "Format of the embedding and output head instead of --quant (e.g. int8)");
  }
}

}  // namespace qlm::cli
