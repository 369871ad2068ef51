#include "apps/qlm/model_path.h"

#include <filesystem>
#include <system_error>

#include "base/error.h"

namespace qlm::cli {

std::string ResolveModelDir(const std::string& flag) {
  if (!flag.empty()) return flag;
  namespace fs = std::filesystem;
  const fs::path rel = fs::path("models") / "austen-gemma3";
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  fs::path beside_exe;
  if (!ec) {
    beside_exe = (exe.parent_path() / ".." / ".." / rel).lexically_normal();
    if (fs::exists(beside_exe / "config.json", ec)) return beside_exe.string();
  }
  fs::path in_source;
#ifdef QLM_SOURCE_DIR
  in_source = (fs::path(QLM_SOURCE_DIR) / rel).lexically_normal();
  if (fs::exists(in_source / "config.json", ec)) return in_source.string();
#endif
  throw Error(
      "no -m/--model given and the built-in model is missing (looked in " +
      (beside_exe.empty() ? std::string("<unknown executable path>") : beside_exe.string()) +
      (in_source.empty() ? std::string() : " and " + in_source.string()) + "); pass -m DIR");
}

}  // namespace qlm::cli
