// qlm-bench-kernels: Google Benchmark over the kernel tables. Benchmarks in
// the other files of this folder register themselves (statically or through
// RegisterMatmulBenchmarks); main measures the read-bandwidth probe first so
// every report can be read against it.
//
//   qlm-bench-kernels                                   # everything
//   qlm-bench-kernels --benchmark_filter='matmul.*/m:1$'
//   QLM_BENCH_LARGE=1 qlm-bench-kernels --benchmark_filter='256000x2304'
//   qlm-bench-kernels --benchmark_filter='bandwidth/'      # probe, stream + FMAs per line
#include <benchmark/benchmark.h>

#include <cstdio>

#include "apps/bench_kernels/bandwidth.h"
#include "apps/bench_kernels/matmul_bench.h"
#include "apps/bench_kernels/stream_ops.h"
#include "kernels/registry.h"

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  std::printf("cpu features: %s\n", qlm::kernels::CpuFeatureString().c_str());
  std::printf("best table: %s\n", qlm::kernels::IsaName(qlm::kernels::BestIsa()));
  std::printf("single-thread read bandwidth (probe, 1 GiB stream): %.2f GB/s\n",
              qlm::bench::ReadBandwidth() / 1e9);
  std::fflush(stdout);
  qlm::bench::RegisterMatmulBenchmarks();
  qlm::bench::RegisterStreamOpsBenchmarks();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
