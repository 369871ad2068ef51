// qlm: the command-line front end. Each subcommand lives in its own file;
// this file wires them together and maps errors to exit codes.
#include <CLI/CLI.hpp>
#include <cstdio>

#include "apps/qlm/commands.h"
#include "base/error.h"
#include "core/version.h"

int main(int argc, char** argv) {
  CLI::App app{"qlm: run Gemma and Llama models on CPUs, quantized"};
  app.set_version_flag("--version", qlm::Version());
  app.require_subcommand(1);
  qlm::cli::AddInfoCommand(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const qlm::UsageError& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  } catch (const qlm::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
