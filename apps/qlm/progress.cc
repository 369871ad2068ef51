#include "apps/qlm/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

namespace qlm::cli {

Progress::Progress(std::string label, uint64_t total, double quiet_s, Plain plain)
    : label_(std::move(label)),
      total_(total),
      quiet_s_(quiet_s),
      plain_(plain),
      tty_(::isatty(STDERR_FILENO) != 0),
      start_(Clock::now()) {}

Progress::~Progress() { Finish(); }

void Progress::Update(uint64_t done, std::string_view detail) {
  const Clock::time_point now = Clock::now();
  const bool last = done >= total_;
  if (std::chrono::duration<double>(now - start_).count() < quiet_s_ && !line_open_) return;
  const int percent = total_ == 0 ? 100 : static_cast<int>(std::min(done, total_) * 100 / total_);
  const std::string detail_str(detail);
  if (tty_) {
    // Redraw at most 10 times a second, but always show the final state.
    if (!last && line_open_ && now - last_draw_ < std::chrono::milliseconds(100)) return;
    last_draw_ = now;
    constexpr int kWidth = 24;
    const int fill = percent * kWidth / 100;
    std::fprintf(stderr, "\r\033[K%s [%s%s] %llu/%llu %3d%% %s", label_.c_str(),
                 std::string(static_cast<size_t>(fill), '#').c_str(),
                 std::string(static_cast<size_t>(kWidth - fill), '.').c_str(),
                 static_cast<unsigned long long>(done), static_cast<unsigned long long>(total_),
                 percent, detail_str.c_str());
    line_open_ = true;
    if (last) Finish();
  } else {
    const int decile = percent / 10;
    if (plain_ == kDeciles && decile == last_decile_) return;
    last_decile_ = decile;
    std::fprintf(stderr, "%s: %llu/%llu (%d%%) %s\n", label_.c_str(),
                 static_cast<unsigned long long>(done), static_cast<unsigned long long>(total_),
                 percent, detail_str.c_str());
  }
  std::fflush(stderr);
}

void Progress::Finish() {
  if (!line_open_) return;
  std::fputc('\n', stderr);
  std::fflush(stderr);
  line_open_ = false;
}

}  // namespace qlm::cli
