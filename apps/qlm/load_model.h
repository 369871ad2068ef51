// Model::Load for the subcommands: a progress bar (apps/qlm/progress.h) on
// stderr while weights are bound, shown only when loading takes a while
// (--quant conversion of a large model); zero-copy loads print nothing.
#pragma once

#include <string>

#include "core/qlm.h"

namespace qlm::cli {

Model LoadModelWithProgress(const std::string& dir, LoadOptions options);

}  // namespace qlm::cli
