// Matmul microbenchmarks (matmul_bench.cc).
#pragma once

namespace qlm::bench {

// Registers matmul/<format>/<isa>/<N>x<K>/m:<M> (f32 activations) and
// matmul_q8/... (int8 activations, quantization included) for every format,
// every ISA available here and the Gemma-2-2B shapes; 256000x2304 only when
// the environment has QLM_BENCH_LARGE=1.
void RegisterMatmulBenchmarks();

}  // namespace qlm::bench
