// Memory-bandwidth probe: a read-only stream over 1 GiB, single thread, on
// 2 MiB pages (AlignedBuffer) like the benchmarks' weight tensors. This
// is the ceiling for decode (every weight is read once per token), and the
// matmul benchmarks report their weight-byte rate as a fraction of it.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>

#include "apps/bench_kernels/bandwidth.h"
#include "apps/bench_kernels/stream_ops.h"
#include "base/aligned_buffer.h"
#include "kernels/registry.h"

namespace qlm::bench {
namespace {

// The probe buffer, allocated and touched once (zero-filled pages would
// otherwise all map to one shared page).
const AlignedBuffer& ProbeBuffer() {
  static const AlignedBuffer buf = [] {
    AlignedBuffer b(kProbeBytes);
    std::memset(b.data(), 1, kProbeBytes);
    return b;
  }();
  return buf;
}

}  // namespace

uint64_t ReadStream(const void* p, size_t bytes) {
  // The best table's read_sum: full-width vector loads, 4 in flight (the
  // same loop `qlm bench` times, so both probes agree).
  static const kernels::ReadSumFn read_sum = kernels::GetTable(kernels::BestIsa()).read_sum;
  return read_sum(p, bytes);
}

double ReadBandwidth() {
  // The best 64 MiB slice over several passes of the 1 GiB buffer: each
  // slice still streams from DRAM, and taking the best one keeps the number
  // stable when other processes share the machine and preempt this one.
  static const double bw = [] {
    const AlignedBuffer& buf = ProbeBuffer();
    constexpr size_t kSlice = size_t{64} << 20;
    double best = 0.0;
    for (int pass = 0; pass < 4; ++pass) {
      for (size_t off = 0; off < kProbeBytes; off += kSlice) {
        const auto t0 = std::chrono::steady_clock::now();
        benchmark::DoNotOptimize(ReadStream(buf.data() + off, kSlice));
        const double s =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (pass > 0) best = std::max(best, static_cast<double>(kSlice) / s);  // 0: warm-up
      }
    }
    return best;
  }();
  return bw;
}

double TimeProbeSlice(size_t bytes) {
  static size_t offset = 0;
  const AlignedBuffer& buf = ProbeBuffer();
  double s = 0.0;
  // A slice larger than the buffer (QLM_BENCH_LARGE's 256000x2304 in bf16
  // or f32) is streamed as whole passes over it plus the rest; each piece
  // stays inside the buffer.
  while (bytes > 0) {
    const size_t piece = std::min(bytes, kProbeBytes);
    if (offset + piece > kProbeBytes) offset = 0;
    const auto t0 = std::chrono::steady_clock::now();
    benchmark::DoNotOptimize(ReadStream(buf.data() + offset, piece));
    s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    offset += piece;
    bytes -= piece;
  }
  return s;
}

namespace {

void BM_ReadBandwidth(benchmark::State& state) {
  const AlignedBuffer& buf = ProbeBuffer();
  for (auto _ : state) benchmark::DoNotOptimize(ReadStream(buf.data(), kProbeBytes));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(kProbeBytes));
  state.counters["GBps"] = benchmark::Counter(
      static_cast<double>(state.iterations()) * static_cast<double>(kProbeBytes) / 1e9,
      benchmark::Counter::kIsRate);
}
BENCHMARK(BM_ReadBandwidth)->Name("bandwidth/read_1GiB")->MinTime(1.0);

#ifdef QLM_BENCH_STREAM_OPS
// The probe buffer streamed with `ops` FMAs per line, each pass followed
// (untimed) by a plain probe pass over the same bytes: bw_frac_paired is
// their time ratio, so both sides see the same moment of the machine.
void BM_StreamFmaPerLine(benchmark::State& state, int ops) {
  const AlignedBuffer& buf = ProbeBuffer();
  double ops_s = 0.0, probe_s = 0.0;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    benchmark::DoNotOptimize(StreamFmaPerLineAvx512(buf.data(), kProbeBytes, ops));
    const auto t1 = std::chrono::steady_clock::now();
    ops_s += std::chrono::duration<double>(t1 - t0).count();
    state.PauseTiming();
    probe_s += TimeProbeSlice(kProbeBytes);
    state.ResumeTiming();
  }
  const double bytes = static_cast<double>(state.iterations()) * static_cast<double>(kProbeBytes);
  state.counters["GBps"] = bytes / ops_s / 1e9;
  state.counters["bw_frac_paired"] = probe_s / ops_s;
}
#endif

}  // namespace

void RegisterStreamOpsBenchmarks() {
#ifdef QLM_BENCH_STREAM_OPS
  if (!kernels::IsaAvailable(kernels::Isa::kAvx512)) return;
  for (int ops : kStreamOps) {
    const std::string name = "bandwidth/stream_fma_per_line:" + std::to_string(ops);
    benchmark::RegisterBenchmark(name.c_str(), BM_StreamFmaPerLine, ops)
        ->MinTime(1.0)
        ->Unit(benchmark::kMillisecond);
  }
#endif
}
}  // namespace qlm::bench
