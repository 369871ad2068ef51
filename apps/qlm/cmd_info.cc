#include <cstdio>

#include "apps/qlm/commands.h"
#include "core/version.h"

namespace qlm::cli {

void AddInfoCommand(CLI::App& app) {
  CLI::App* info = app.add_subcommand("info", "Show CPU features, kernels and model summary");
  info->callback([] { std::printf("qlm %s\n", qlm::Version()); });
}

}  // namespace qlm::cli
