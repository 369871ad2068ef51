// Model::Load for the subcommands: progress bars (apps/qlm/progress.h) on
// stderr while weight files are read and while weights are bound, each
// shown only when it takes a while (reading a file of gigabytes, --quant
// conversion of a large model); small or mapped loads print nothing.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "core/qlm.h"

namespace qlm::cli {

// --mmap (and --no-mmap, the default) for every command that runs a model:
// sets `mmap`, which the command applies as LoadOptions::mmap.
void AddMmapFlag(CLI::App* cmd, bool& mmap);

Model LoadModelWithProgress(const std::string& dir, LoadOptions options);

}  // namespace qlm::cli
