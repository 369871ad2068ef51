// Multi-threaded memory read bandwidth probe: the ceiling for decode, which
// reads every weight once per token. Used by `qlm bench` to report decode
// throughput as a fraction of what the memory system can deliver.
#pragma once

#include <cstddef>

namespace qlm {

class ThreadPool;

// Read bandwidth in bytes per second with every thread of `pool` streaming
// its own contiguous slice of a `bytes`-byte buffer (default 1 GiB, far
// beyond any cache). The best of `passes` passes (after one warm-up pass).
double MeasureReadBandwidth(ThreadPool& pool, size_t bytes = size_t{1} << 30, int passes = 5);

}  // namespace qlm
