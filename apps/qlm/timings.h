// The llama.cpp-style timing summary `qlm run` and `qlm chat` print on stderr.
#pragma once

#include "core/qlm.h"

namespace qlm::cli {

void PrintTimings(double load_ms, const GenerateStats& stats, double total_ms);
// The KV cache line of the summary: type, bytes of the positions written,
// bytes at the full context.
void PrintKvMemory(const Session& session);

}  // namespace qlm::cli
