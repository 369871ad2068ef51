#include "core/mem_bandwidth.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <vector>

#include "base/aligned_buffer.h"
#include "core/thread_pool.h"

namespace qlm {

double MeasureReadBandwidth(ThreadPool& pool, const kernels::KernelTable& table, size_t bytes,
                            int passes) {
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
    pool.ParallelFor(words, 8, [&](size_t b, size_t e, size_t idx) {
      sink[idx] += table.read_sum(p + b, (e - b) * sizeof(uint64_t));
    });
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
