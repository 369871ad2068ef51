// The single-thread memory read bandwidth of this machine, measured once per
// process by the same read-only stream the bandwidth benchmark runs, so
// kernel benchmarks can report their speed as a fraction of it.
#pragma once

#include <cstddef>
#include <cstdint>

namespace qlm::bench {

// Bytes the probe streams per pass: 1 GiB, far beyond any cache.
inline constexpr size_t kProbeBytes = size_t{1} << 30;

// Read bandwidth in bytes per second: the best 64 MiB slice of several
// passes over kProbeBytes. Measured on first call (about a second), cached.
double ReadBandwidth();

// Seconds to stream the next `bytes` bytes (a multiple of 64; more than
// kProbeBytes passes over the buffer more than once) of the probe buffer,
// wrapping around it: the paired probe
// that matmul benchmarks run right after each timed call, so a call and the
// ceiling it is judged against share the same moment of a shared machine.
double TimeProbeSlice(size_t bytes);

// Sums `bytes` bytes (a multiple of 64) of `p` as 64-bit words: the probe's
// inner loop (kernels' read_sum of the best table, called through a pointer
// so the compiler cannot drop it).
uint64_t ReadStream(const void* p, size_t bytes);

}  // namespace qlm::bench
