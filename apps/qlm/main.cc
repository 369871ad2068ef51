// qlm: the command-line front end. Each subcommand lives in its own file;
// this file wires them together and maps errors to exit codes.
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <string>
#include <vector>

#include "apps/qlm/commands.h"
#include "base/error.h"
#include "core/version.h"

namespace {

// -v/--verbose (repeatable) and --log-file are global options, read before
// parsing so that every subcommand logs at the right level from its start.
void ConfigureLogging(int argc, char** argv) {
  int verbosity = 0;
  std::string log_file;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--") break;
    if (arg == "--verbose") {
      ++verbosity;
    } else if (arg.size() >= 2 && arg[0] == '-' && arg[1] == 'v' &&
               arg.find_first_not_of('v', 1) == std::string::npos) {
      verbosity += static_cast<int>(arg.size()) - 1;
    } else if (arg == "--log-file" && i + 1 < argc) {
      log_file = argv[i + 1];
    } else if (arg.rfind("--log-file=", 0) == 0) {
      log_file = arg.substr(11);
    }
  }
  spdlog::set_level(verbosity >= 2   ? spdlog::level::trace
                    : verbosity == 1 ? spdlog::level::debug
                                     : spdlog::level::info);
  if (!log_file.empty()) {
    try {
      auto sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(log_file);
      sink->set_pattern("[%Y-%m-%d %H:%M:%S.%e] [%l] %v");
      spdlog::default_logger()->sinks().push_back(sink);
    } catch (const spdlog::spdlog_ex& e) {
      throw qlm::Error("--log-file: cannot open " + log_file + ": " + e.what());
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  // Logs go to stderr: stdout carries only a command's output (generated text).
  spdlog::set_default_logger(spdlog::stderr_color_mt("qlm"));
  spdlog::set_pattern("%^%v%$");
  CLI::App app{"qlm: run Gemma and Llama models on CPUs, quantized"};
  app.set_version_flag("--version", qlm::Version());
  app.require_subcommand(1);
  qlm::cli::AddInfoCommand(app);
  qlm::cli::AddRandomModelCommand(app);
  qlm::cli::AddRunCommand(app);
  qlm::cli::AddLogitsCommand(app);
  qlm::cli::AddChatCommand(app);
  qlm::cli::AddBenchCommand(app);
  qlm::cli::AddQuantizeCommand(app);
  qlm::cli::AddPerplexityCommand(app);
  // (Register new subcommands above this line.) Global options, accepted
  // after any subcommand too (fallthrough).
  int verbosity = 0;
  std::string log_file;
  app.add_flag("-v,--verbose", verbosity, "More log detail on stderr (-v debug, -vv trace)");
  app.add_option("--log-file", log_file, "Also write the log to this file");
  for (CLI::App* sub : app.get_subcommands({})) sub->fallthrough();
  // llama.cpp spells the system prompt -sys; CLI11 short options are one
  // letter, so it is rewritten to the long name.
  std::vector<char*> args(argv, argv + argc);
  static char kSystemPrompt[] = "--system-prompt";
  for (char*& arg : args) {
    if (std::string(arg) == "-sys") arg = kSystemPrompt;
  }
  try {
    ConfigureLogging(argc, argv);
    app.parse(static_cast<int>(args.size()), args.data());
  } catch (const CLI::ParseError& e) {
    // --help and --version exit 0 with their text; every other parse error
    // is a usage error: one `error: ...` line, exit code 2.
    if (e.get_exit_code() == 0) return app.exit(e);
    std::string msg = e.what();
    if (app.get_subcommands().empty() && args.size() > 1 && args[1][0] != '-') {
      msg = std::string("unknown command '") + args[1] + "' (commands:";
      for (const CLI::App* sub : app.get_subcommands({})) msg += " " + sub->get_name();
      msg += ")";
    }
    for (char& ch : msg) {
      if (ch == '\n') ch = ' ';
    }
    std::fprintf(stderr, "error: %s (see qlm --help or qlm COMMAND --help)\n", msg.c_str());
    return 2;
  } catch (const qlm::UsageError& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  } catch (const qlm::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {  // e.g. out of memory: still one line, never a crash
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
