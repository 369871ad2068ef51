// Progress of long work on stderr, the one way every subcommand shows it.
//
// On a terminal: one self-updating line, "\r"-rewritten at most every 100 ms,
//   label [##########..........] 12/80 50% detail
// Otherwise (a pipe, a log, CI): a plain line at each 10 % step, so logs stay
// short and grep-able, or at every step with `kEveryStep` (few, slow steps
// whose details matter in a log: one line per quantized tensor). Work that finishes within
// `quiet_s` seconds prints nothing at all, so fast paths (a zero-copy model load) stay silent.
// stdout is never touched: generated text stays pipe-friendly.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace qlm::cli {

class Progress {
 public:
  enum Plain { kDeciles, kEveryStep };
  // label: what is being done ("loading", "quantizing"); total: steps.
  Progress(std::string label, uint64_t total, double quiet_s = 0.0, Plain plain = kDeciles);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  // `done` steps of `total` are complete; `detail` names the current one.
  void Update(uint64_t done, std::string_view detail = {});
  // Ends the terminal line (if one was started). Idempotent.
  void Finish();

  // Whether stderr is a terminal (the bar form).
  bool tty() const { return tty_; }

 private:
  using Clock = std::chrono::steady_clock;
  std::string label_;
  uint64_t total_;
  double quiet_s_;
  Plain plain_;
  bool tty_;
  bool line_open_ = false;  // a "\r" line is on screen
  int last_decile_ = -1;    // plain mode: the last 10 % step printed
  Clock::time_point start_;
  Clock::time_point last_draw_{};
};

}  // namespace qlm::cli
