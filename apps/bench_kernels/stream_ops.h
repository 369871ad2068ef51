// A read stream shaped like a decode kernel's: every 64-byte line prefetched
// 8 KiB ahead into L2 (as the decoders do) and then loaded, with `ops`
// dependent vector FMAs applied to each loaded line before it is summed.
// Decode kernels spend between one (f32) and a dozen (q4, sfp8) vector
// operations per weight line; this measures how much read bandwidth one core
// keeps at each such load, with no decoding to get wrong.
#pragma once

#include <cstddef>
#include <cstdint>

namespace qlm::bench {

// The op counts the benchmark runs (StreamFmaPerLineAvx512 accepts these only).
inline constexpr int kStreamOps[] = {0, 1, 2, 4, 8, 12, 16};

// Streams `bytes` (a multiple of 256) of `p` on 512-bit vectors with `ops`
// FMAs per line; returns a sum so the work cannot be dropped. Defined only on
// x86-64 (stream_ops_avx512.cc, compiled for AVX-512F); call it only where
// the CPU has AVX-512F.
float StreamFmaPerLineAvx512(const uint8_t* p, size_t bytes, int ops);

// Registers bandwidth/stream_fma_per_line:N for every N in kStreamOps where
// the CPU runs the avx512 table; nothing elsewhere.
void RegisterStreamOpsBenchmarks();

}  // namespace qlm::bench
