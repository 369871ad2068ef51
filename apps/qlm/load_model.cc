#include "apps/qlm/load_model.h"

#include <optional>

#include "apps/qlm/progress.h"

namespace qlm::cli {

void AddNoMmapFlag(CLI::App* cmd, bool& no_mmap) {
  cmd->add_flag("--no-mmap", no_mmap,
                "Read the weight files into memory before starting instead of mapping them: "
                "slower start and no sharing with other processes, but the weights sit in "
                "freshly allocated 2 MiB pages wherever the page cache put the file (decode can "
                "be faster; docs/benchmarks.md)");
}

Model LoadModelWithProgress(const std::string& dir, LoadOptions options) {
  // Silent for the first half second: most loads (mmap, no conversion) are
  // done by then.
  constexpr double kQuietSeconds = 0.5;
  std::optional<Progress> bar;
  options.progress = [&](size_t done, size_t total, const std::string& name) {
    if (!bar) bar.emplace("loading", total, kQuietSeconds);
    bar->Update(done, name);
  };
  Model model = Model::Load(dir, options);
  if (bar) bar->Finish();
  return model;
}

}  // namespace qlm::cli
