// The --quant / --group-size flags shared by every command that loads a
// model (run, logits, perplexity, quantize): parsing, llama.cpp-style
// aliases, and validation.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <optional>
#include <string>

#include "quant/format.h"

namespace qlm::cli {

// The --help text listing formats and aliases.
inline constexpr const char* kQuantHelp =
    "Convert weights while loading (round-to-nearest): f32, bf16, int8, q4, sfp8 "
    "(alias: q8_0 = int8, llama.cpp's Q8_0 layout). Linear weights and the output head are "
    "converted (a tied embedding once, serving both); norms stay f32";

// A format name or alias; nullopt for "" (keep the stored format). Throws
// qlm::UsageError naming `flag` for anything else.
std::optional<Format> ParseQuantName(const std::string& name, const std::string& flag);

// Checks --group-size: 0 (default) or 32/64/128, and only with q4.
uint32_t CheckGroupSize(uint32_t group_size, std::optional<Format> format);

struct QuantFlags {
  std::string quant;
  uint32_t group_size = 0;
  std::string head_quant;
};

// Adds --quant and --group-size to `cmd`, and --head-quant with
// `head_quant` (for commands that apply flags with ApplyQuantFlags).
void AddQuantFlags(CLI::App* cmd, QuantFlags& flags, bool head_quant = false);

// Parses and checks all three into `quant`, `group_size` and `head_quant`
// of `o` (LoadOptions, core/qlm.h). Throws qlm::UsageError.
template <class Options>
void ApplyQuantFlags(const QuantFlags& flags, Options& o) {
  o.quant = ParseQuantName(flags.quant, "--quant");
  o.head_quant = ParseQuantName(flags.head_quant, "--head-quant");
  const bool any_q4 = o.quant == Format::kQ4 || o.head_quant == Format::kQ4;
  o.group_size =
      CheckGroupSize(flags.group_size, any_q4 ? std::optional<Format>(Format::kQ4) : o.quant);
}

}  // namespace qlm::cli
