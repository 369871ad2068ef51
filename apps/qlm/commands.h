// Each subcommand registers itself on the app from its own file
// (apps/qlm/cmd_<name>.cc). Callbacks throw qlm::Error / qlm::UsageError;
// main() turns those into one `error: ...` line and exit code 1 / 2.
#pragma once

#include <CLI/CLI.hpp>

namespace qlm::cli {

void AddInfoCommand(CLI::App& app);

}  // namespace qlm::cli
