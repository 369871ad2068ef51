// The sampling flags shared by `qlm run` and `qlm chat` (llama.cpp's names):
// --temp, --top-k, --top-p, --min-p, --repeat-penalty, --repeat-last-n, -s/--seed.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>

#include "core/sampling.h"

namespace qlm::cli {

struct SamplingFlags {
  SamplingParams sampling;
  int64_t seed = -1;  // -1 = random
};

// Registers the flags on `cmd`, each with its default in --help.
void AddSamplingFlags(CLI::App* cmd, SamplingFlags& flags);

// The parameters to sample with: the seed drawn when -1, then validated
// (throws qlm::UsageError on a bad value, before any model is loaded).
SamplingParams ResolveSamplingFlags(const SamplingFlags& flags);

}  // namespace qlm::cli
