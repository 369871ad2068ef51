// AVX-512 BF16 entries of the avx512 table: the SFP8 decode (m == 1) as bf16
// weight words times bf16 activations with vdpbf16ps. This file alone is
// compiled with -mavx512bf16 (and VBMI for the byte-permute decoder); the
// registry patches its entry into the avx512 table only when the CPU
// reports both (Zen 4+, Sapphire Rapids+). Prefill (m > 1) runs the VBMI
// table's sfp8 matmul (the entry this one replaces), instantiated here under
// its own arch type.

// GCC 12 false positive: AVX-512 intrinsics built on _mm512_undefined_ps()
// (`__m512 __Y = __Y;`) trip -W(maybe-)uninitialized once inlined.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "kernels/isa_tables.h"
#include "kernels/registry.h"
#include "kernels/scalar/matmul.h"
#include "kernels/simd/matmul-inl.h"

namespace qlm::kernels {
namespace {

// The Arch of this translation unit's instantiations of shared templates.
struct Bf16Tag {};

// x for MatmulSfp8Bf16: stored order (perm applied), zero-padded to whole
// 64-input chunks, rounded to bf16 (vcvtneps2bf16: nearest even, as
// RoundToBF16 except that denormals become zero, which vdpbf16ps would do
// anyway), and each chunk's words in the decoder's order: vector 0 of chunk
// c holds inputs 16L + 0-7 in 128-bit lane L, vector 1 inputs 16L + 8-15.
const __m512i* Bf16X(const float* x, size_t k, const int32_t* perm, size_t chunks) {
  const float* xs = simd::mm::StoredX<Bf16Tag>(x, 1, k, perm, chunks * 64);
  __m512i* xw =
      static_cast<__m512i*>(simd::mm::Scratch<Bf16Tag, 1>(chunks * 64 * sizeof(uint16_t)));
  for (size_t c = 0; c < chunks; ++c) {
    const float* src = xs + c * 64;
    auto pair = [&](size_t a) {  // inputs 16a .. 16a + 31 as [bf16 of a | bf16 of a + 1]
      const __m256i lo = (__m256i)_mm512_cvtneps_pbh(_mm512_load_ps(src + 16 * a));
      const __m256i hi = (__m256i)_mm512_cvtneps_pbh(_mm512_load_ps(src + 16 * a + 16));
      return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
    };
    const __m512i t01 = pair(0), t23 = pair(2);
    xw[2 * c] = _mm512_shuffle_i64x2(t01, t23, _MM_SHUFFLE(2, 0, 2, 0));
    xw[2 * c + 1] = _mm512_shuffle_i64x2(t01, t23, _MM_SHUFFLE(3, 1, 3, 1));
  }
  return xw;
}

// Decode (m == 1): each row front to back, 64 codes per step: two vpermi2b
// look up the high and low bytes of the bf16 magnitudes, vpternlogd adds the
// sign, two byte unpacks make 2 × 32 words, and two vdpbf16ps multiply them
// with bf16(x) (2 products per f32 lane). The f32 route (simd/matmul-inl.h)
// spends 4 word unpacks and 4 FMA on the same 64 codes. The codes are
// prefetched Ahead bytes ahead with __builtin_prefetch locality Locality.
template <size_t Ahead, int Locality>
void MatmulSfp8Bf16(const QTensor& w, const float* x, size_t m, float* y, size_t n_begin,
                    size_t n_end) {
  if (m != 1) {
    return simd::mm::Matmul<simd::mm::avx512_vbmi_bf16, Format::kSFP8>(w, x, m, y, n_begin, n_end);
  }
  CheckMatmulArgs(w, Format::kSFP8, n_begin, n_end);
  if (n_begin == n_end) return;
  const size_t k = w.desc.cols, chunks = (k + 63) / 64, full = k / 64, tail = k % 64;
  const __m512i* xw = Bf16X(x, k, w.perm, chunks);
  const float scale = w.desc.tensor_scale;
  for (size_t n = n_begin; n < n_end; ++n) {
    const uint8_t* row = w.data + n * w.desc.row_bytes;
    // Four chains: vdpbf16ps has several cycles of latency.
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                     _mm512_setzero_ps()};
    auto chunk = [&](size_t c, __m512i codes, __m512 & a0, __m512 & a1)
        __attribute__((always_inline)) {
      __m512i w0, w1;
      simd::mm::Sfp8Bf16WordsVbmi<Bf16Tag>(codes, w0, w1);
      a0 = _mm512_dpbf16_ps(a0, (__m512bh)w0, (__m512bh)xw[2 * c]);
      a1 = _mm512_dpbf16_ps(a1, (__m512bh)w1, (__m512bh)xw[2 * c + 1]);
    };
    size_t c = 0;
    for (; c + 2 <= full; c += 2) {
      const uint8_t* p = row + c * 64;
      __builtin_prefetch(p + Ahead, 0, Locality);
      __builtin_prefetch(p + 64 + Ahead, 0, Locality);
      chunk(c, _mm512_loadu_si512(p), acc[0], acc[1]);
      chunk(c + 1, _mm512_loadu_si512(p + 64), acc[2], acc[3]);
    }
    if (c < full) {
      chunk(c, _mm512_loadu_si512(row + 64 * c), acc[0], acc[1]);
      ++c;
    }
    if (tail != 0) {  // rows are not padded: never read past this one
      chunk(c, _mm512_maskz_loadu_epi8((__mmask64{1} << tail) - 1, row + 64 * c), acc[2], acc[3]);
    }
    const __m512 sum = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
    y[n] = _mm512_reduce_add_ps(sum) * scale;
  }
}

}  // namespace

// 16 KiB ahead into L2 (prefetcht1): the VBMI decode's setting (Zen 4,
// session 7), which Intel and Zen 4 inherit (session 14 measured this decode
// with prefetcht1 on Emerald Rapids on par with the f32 one, 0.76 / 0.76 of
// the probe against 0.75 / 0.72; Zen 4 is unmeasured). Zen 5 reads
// markedly faster with prefetchnta 8 KiB ahead for
// every row length (docs/benchmarks.md, session 19): Gemma-2-2B sfp8, tg32
// at 2 threads, paired, three alternated rounds, 16.0 / 16.4 / 16.7 t/s
// against 14.4 / 14.4 / 14.5 with prefetcht1 (nta on rows of >= 4096 codes
// only: 14.8 / 14.7 / 14.5); 4 to 16 KiB ahead read alike, 2 KiB slower.
void FillAvx512Bf16Table(KernelTable& t) {
  t.matmul[static_cast<int>(Format::kSFP8)] = MatmulSfp8Bf16<16384, 2>;
}

void FillAvx512Bf16NtaTable(KernelTable& t) {
  t.matmul[static_cast<int>(Format::kSFP8)] = MatmulSfp8Bf16<8192, 0>;
}

}  // namespace qlm::kernels
