// Multi-threaded memory read bandwidth probe: the ceiling for decode, which
// reads every weight once per token. Used by `qlm bench` to report decode
// throughput as a fraction of what the memory system can deliver.
#pragma once

#include <cstddef>

#include "base/aligned_buffer.h"
#include "kernels/registry.h"

namespace qlm {

class ThreadPool;

// A `bytes`-byte buffer (default 1 GiB, far beyond any cache) on 2 MiB pages
// where the kernel allows, like weights converted at load, each thread's
// slice first touched by that thread. Kept alive so the bandwidth can be
// re-measured cheaply next to each timed run: on a VM the host's placement
// of the virtual CPUs moves the two-thread figure by up to 1.6x between
// minutes (docs/benchmarks.md), so only a probe taken at the same time as
// the run it judges is a fair ceiling.
class ReadBandwidthProbe {
 public:
  explicit ReadBandwidthProbe(ThreadPool& pool, size_t bytes = size_t{1} << 30);
  // Bytes per second with every thread of the pool streaming its slice
  // through `table.read_sum` (the widest loads of the table the model runs
  // with): the best of `passes` passes after one warm-up pass.
  double Measure(const kernels::KernelTable& table, int passes = 5);

  // Seconds to stream the next `bytes` bytes of the buffer (wrapping; each
  // call continues where the last one stopped, so the data is never still in
  // cache), split across the pool like Measure. `qlm bench` runs one such
  // slice of a token's worth of bytes right after every decoded token: the
  // paired fraction Σ slice seconds / Σ token seconds then compares the
  // decode with the memory system at the same moments, which a probe once
  // per repetition cannot do while the host moves the bandwidth around.
  double Stream(const kernels::KernelTable& table, size_t bytes);

 private:
  ThreadPool& pool_;
  AlignedBuffer buf_;
  size_t words_ = 0;
  size_t cursor_ = 0;  // next word Stream reads
  uint64_t sink_ = 0;  // Stream's sums, kept observable
};

}  // namespace qlm
