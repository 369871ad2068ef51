#include "apps/qlm/load_model.h"

#include <spdlog/spdlog.h>

#include <filesystem>
#include <optional>

#include "apps/qlm/progress.h"
#include "loaders/mapped_file.h"

namespace qlm::cli {

void AddMmapFlag(CLI::App* cmd, bool& mmap) {
  cmd->add_flag("--mmap,!--no-mmap", mmap,
                "Map the weight files instead of reading them into memory first (--no-mmap, the "
                "default): instant start and pages shared with other processes, but decode can be "
                "much slower where the page cache maps the file with small pages "
                "(docs/benchmarks.md)");
}

Model LoadModelWithProgress(const std::string& dir, LoadOptions options) {
  // Silent for the first half second: most loads (mmap, no conversion, a
  // small file read) are done by then.
  constexpr double kQuietSeconds = 0.5;
  // One bar per weight file read, in MiB.
  std::optional<Progress> reading;
  std::string reading_path;
  options.read_progress = [&](size_t done, size_t total, const std::string& path) {
    if (!reading || path != reading_path) {
      if (reading) reading->Finish();
      reading.emplace("reading", total >> 20, kQuietSeconds);
      reading_path = path;
    }
    reading->Update(done >> 20, "MiB of " + std::filesystem::path(path).filename().string());
  };
  std::optional<Progress> bar;
  options.progress = [&](size_t done, size_t total, const std::string& name) {
    if (reading) {
      reading->Finish();
      reading.reset();
    }
    if (!bar) bar.emplace("loading", total, kQuietSeconds);
    bar->Update(done, name);
  };
  Model model = Model::Load(dir, options);
  if (reading) reading->Finish();
  if (bar) bar->Finish();
  if (!options.mmap && model.read_bytes() < model.mapped_bytes()) {
    const size_t mapped = model.mapped_bytes() - model.read_bytes();
    spdlog::warn(
        "{:.2f} GB of weight files mapped instead of read into memory: a copy did not fit in "
        "the available memory (now {:.2f} GB); decode may be slower",
        static_cast<double>(mapped) / 1e9, static_cast<double>(AvailableMemoryBytes()) / 1e9);
  }
  return model;
}

}  // namespace qlm::cli
