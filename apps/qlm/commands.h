// Each subcommand registers itself on the app from its own file
// (apps/qlm/cmd_<name>.cc). Callbacks throw qlm::Error / qlm::UsageError;
// main() turns those into one `error: ...` line and exit code 1 / 2.
#pragma once

#include <CLI/CLI.hpp>

namespace qlm::cli {

void AddInfoCommand(CLI::App& app);
void AddRandomModelCommand(CLI::App& app);
void AddRunCommand(CLI::App& app);
void AddLogitsCommand(CLI::App& app);
void AddChatCommand(CLI::App& app);
void AddBenchCommand(CLI::App& app);
void AddQuantizeCommand(CLI::App& app);
void AddPerplexityCommand(CLI::App& app);

}  // namespace qlm::cli
