// Fuzzes the CLI's flag parsing for `qlm run` and `qlm logits`: the same
// CLI11 option sets the qlm binary registers (AddRunCommand and
// AddLogitsCommand from apps/qlm/cmd_run.cc and cmd_logits.cc, compiled into
// this target), then their callbacks' value checks (token ids, sampling
// parameters, thread and batch counts), which all run before a model load.
//
// The input is the argument list, NUL-separated. Every outcome must be a
// CLI11 parse error or a qlm::Error; nothing else may escape. So that no
// input can make the target load a real model or read a device file, inputs
// with an argument containing '/' are skipped, and scripts/fuzz.sh runs the
// target in an empty directory: -m/-f can then only name things that do not
// exist (this build has no built-in model either, see fuzz/CMakeLists.txt).
#include <CLI/CLI.hpp>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "apps/qlm/commands.h"
#include "base/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<std::string> args;
  std::string cur;
  for (size_t i = 0; i < size; ++i) {
    if (data[i] == '\0') {
      args.push_back(cur);
      cur.clear();
    } else {
      cur.push_back(static_cast<char>(data[i]));
    }
  }
  args.push_back(cur);
  if (args.size() > 64) return 0;
  for (const std::string& a : args) {
    if (a.find('/') != std::string::npos) return 0;
  }

  CLI::App app{"qlm"};
  app.require_subcommand(1);
  qlm::cli::AddRunCommand(app);
  qlm::cli::AddLogitsCommand(app);
  std::vector<std::string> reversed(args.rbegin(), args.rend());  // CLI11's vector order
  try {
    app.parse(reversed);
  } catch (const CLI::ParseError&) {
  } catch (const qlm::Error&) {
  }
  return 0;
}
