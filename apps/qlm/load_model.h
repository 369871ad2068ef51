// Model::Load for the subcommands: a progress bar (apps/qlm/progress.h) on
// stderr while weights are bound, shown only when loading takes a while
// (--quant conversion of a large model); zero-copy loads print nothing.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "core/qlm.h"

namespace qlm::cli {

// --no-mmap for every command that runs a model: sets `no_mmap`, which the
// command applies as LoadOptions::mmap = !no_mmap.
void AddNoMmapFlag(CLI::App* cmd, bool& no_mmap);

Model LoadModelWithProgress(const std::string& dir, LoadOptions options);

}  // namespace qlm::cli
