// StreamFmaPerLineAvx512 (stream_ops.h). This file alone is compiled with
// -mavx512f; the benchmark calls it only when the CPU runs the avx512 table.

// GCC 12's intrinsic headers build "undefined" vectors as `__m512 y = y;`,
// which -Wmaybe-uninitialized flags once inlined (_mm512_reduce_add_ps).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop

#include <stdexcept>

#include "apps/bench_kernels/stream_ops.h"

namespace qlm::bench {
namespace {

constexpr size_t kPrefetchAhead = 8192;  // the decoders' distance (simd/matmul-inl.h)

template <int Ops>
float Stream(const uint8_t* p, size_t bytes) {
  // f → f / 2 + 1 keeps every value near 2 whatever the bytes hold (the
  // probe buffer's 0x01 bytes are small normal floats): no denormals, no
  // overflow.
  const __m512 half = _mm512_set1_ps(0.5f), one = _mm512_set1_ps(1.0f);
  __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i < bytes; i += 256) {
    __m512 f[4];
    for (size_t l = 0; l < 4; ++l) {
      __builtin_prefetch(p + i + 64 * l + kPrefetchAhead, 0, 2);
      f[l] = _mm512_castsi512_ps(_mm512_load_si512(p + i + 64 * l));
    }
#pragma GCC unroll 16
    for (int k = 0; k < Ops; ++k) {
      for (size_t l = 0; l < 4; ++l) f[l] = _mm512_fmadd_ps(f[l], half, one);
    }
    a0 = _mm512_add_ps(a0, f[0]);
    a1 = _mm512_add_ps(a1, f[1]);
    a2 = _mm512_add_ps(a2, f[2]);
    a3 = _mm512_add_ps(a3, f[3]);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

}  // namespace

float StreamFmaPerLineAvx512(const uint8_t* p, size_t bytes, int ops) {
  if (bytes % 256 != 0) throw std::invalid_argument("StreamFmaPerLineAvx512: bytes % 256 != 0");
  switch (ops) {
    case 0:
      return Stream<0>(p, bytes);
    case 1:
      return Stream<1>(p, bytes);
    case 2:
      return Stream<2>(p, bytes);
    case 4:
      return Stream<4>(p, bytes);
    case 8:
      return Stream<8>(p, bytes);
    case 12:
      return Stream<12>(p, bytes);
    case 16:
      return Stream<16>(p, bytes);
    default:
      throw std::invalid_argument("StreamFmaPerLineAvx512: ops must be one of kStreamOps");
  }
}

}  // namespace qlm::bench
