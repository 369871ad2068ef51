#include "core/mem_bandwidth.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <vector>

#include "core/thread_pool.h"

namespace qlm {

ReadBandwidthProbe::ReadBandwidthProbe(ThreadPool& pool, size_t bytes)
    : pool_(pool), buf_(std::max<size_t>(bytes & ~size_t{63}, 64)) {
  words_ = buf_.size() / sizeof(uint64_t);
  auto* p = buf_.as<uint64_t>();
  pool_.ParallelFor(words_, 8, [&](size_t b, size_t e, size_t) {
    for (size_t i = b; i < e; ++i) p[i] = i;
  });
}

double ReadBandwidthProbe::Measure(const kernels::KernelTable& table, int passes) {
  const uint64_t* p = buf_.as<uint64_t>();
  std::vector<uint64_t> sink(pool_.num_threads(), 0);
  double best = 0.0;
  for (int pass = 0; pass <= std::max(passes, 1); ++pass) {
    const auto t0 = std::chrono::steady_clock::now();
    pool_.ParallelFor(words_, 8, [&](size_t b, size_t e, size_t idx) {
      sink[idx] += table.read_sum(p + b, (e - b) * sizeof(uint64_t));
    });
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (pass > 0 && s > 0) best = std::max(best, static_cast<double>(buf_.size()) / s);
  }
  uint64_t total = 0;
  for (uint64_t v : sink) total += v;
  // Keep the sums observable so the reads cannot be optimized away.
  volatile uint64_t keep = total;
  (void)keep;
  return best;
}

double ReadBandwidthProbe::Stream(const kernels::KernelTable& table, size_t bytes) {
  const uint64_t* p = buf_.as<uint64_t>();
  std::vector<uint64_t> sink(pool_.num_threads(), 0);
  size_t left = (bytes + sizeof(uint64_t) - 1) / sizeof(uint64_t);
  const auto t0 = std::chrono::steady_clock::now();
  while (left > 0) {
    const size_t begin = cursor_, n = std::min(left, words_ - begin);
    pool_.ParallelFor(n, 8, [&](size_t b, size_t e, size_t idx) {
      sink[idx] += table.read_sum(p + begin + b, (e - b) * sizeof(uint64_t));
    });
    left -= n;
    cursor_ = (begin + n) % words_;
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (uint64_t v : sink) sink_ += v;
  volatile uint64_t keep = sink_;
  (void)keep;
  return s;
}

}  // namespace qlm
