#include "core/mem_bandwidth.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <vector>

#include "base/aligned_buffer.h"
#include "core/thread_pool.h"

namespace qlm {
namespace {

// Sums `words` 64-bit words with 8 independent accumulators so the loop is
// limited by loads, not by the add chain.
__attribute__((noinline)) uint64_t SumWords(const uint64_t* p, size_t words) {
  uint64_t a[8] = {};
  size_t i = 0;
  for (; i + 8 <= words; i += 8) {
    for (int j = 0; j < 8; ++j) a[j] += p[i + j];
  }
  for (; i < words; ++i) a[0] += p[i];
  uint64_t s = 0;
  for (uint64_t v : a) s += v;
  return s;
}

}  // namespace

double MeasureReadBandwidth(ThreadPool& pool, size_t bytes, int passes) {
  bytes = std::max<size_t>(bytes & ~size_t{63}, 64);
  AlignedBuffer buf(bytes);
  const size_t words = bytes / sizeof(uint64_t);
  auto* p = reinterpret_cast<uint64_t*>(buf.data());
  // Touch every page from the thread that will read it (first touch).
  pool.ParallelFor(words, 8, [&](size_t b, size_t e, size_t) {
    for (size_t i = b; i < e; ++i) p[i] = i;
  });
  std::vector<uint64_t> sink(pool.num_threads(), 0);
  double best = 0.0;
  for (int pass = 0; pass <= std::max(passes, 1); ++pass) {
    const auto t0 = std::chrono::steady_clock::now();
    pool.ParallelFor(words, 8,
                     [&](size_t b, size_t e, size_t idx) { sink[idx] += SumWords(p + b, e - b); });
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (pass > 0 && s > 0) best = std::max(best, static_cast<double>(bytes) / s);
  }
  uint64_t total = 0;
  for (uint64_t v : sink) total += v;
  // Keep the sums observable so the reads cannot be optimized away.
  volatile uint64_t keep = total;
  (void)keep;
  return best;
}

}  // namespace qlm
