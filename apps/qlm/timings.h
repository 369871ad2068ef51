// The llama.cpp-style timing summary `qlm run` and `qlm chat` print on stderr.
#pragma once

#include "core/qlm.h"

namespace qlm::cli {

void PrintTimings(double load_ms, const GenerateStats& stats, double total_ms);

}  // namespace qlm::cli
