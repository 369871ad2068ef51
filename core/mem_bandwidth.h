// Multi-threaded memory read bandwidth probe: the ceiling for decode, which
// reads every weight once per token. Used by `qlm bench` to report decode
// throughput as a fraction of what the memory system can deliver.
#pragma once

#include <cstddef>

#include "kernels/registry.h"

namespace qlm {

class ThreadPool;

// Read bandwidth in bytes per second with every thread of `pool` streaming
// its own contiguous slice of a `bytes`-byte buffer (default 1 GiB, far
// beyond any cache) through `table.read_sum` (the widest loads of the table
// the model runs with). The buffer sits on 2 MiB pages where the kernel
// allows, like weights converted at load. The best of `passes` passes
// (after one warm-up pass).
double MeasureReadBandwidth(ThreadPool& pool, const kernels::KernelTable& table,
                            size_t bytes = size_t{1} << 30, int passes = 5);

}  // namespace qlm
