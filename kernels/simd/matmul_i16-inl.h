// Decode (m == 1) of int8 weights with f32 activations on x86, through
// 16-bit activation codes. Included from matmul-inl.h.
//
// Why: decoding int8 codes to f32 costs a widen, a conversion and an FMA per
// vector of weights plus one FMA per group for its scale; that kept one Zen 4
// core compute-bound at ~0.66 of the DRAM read bandwidth. Here x is rounded
// once per call to int16 codes per 32-input block (scale = amax / 32767, so
// the error is at most 2^-16 of the block's largest |x|: about 250× below
// the int8 weights' own rounding error, and within the f32 kernels' test
// tolerance), and each weight group of 32 becomes one sign-extend and one
// vpmaddwd (exact int32 sums of pairs), one conversion and one FMA by
// s_w · s_x. That is ~2× fewer vector operations per weight byte.
//
// Rows are read front to back, two at a time from the two halves of the
// range: two sequential streams (see Gemv in matmul-inl.h for why).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "kernels/registry.h"
#include "kernels/scalar/matmul.h"
#include "quant/format.h"

namespace qlm::kernels::simd {
namespace mm {

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)

inline constexpr size_t kI16Block = kInt8GroupSize;  // one act scale per weight group
inline constexpr float kI16Max = 32767.0f;

// Rows of stored-order x (zero-padded to kp, a multiple of kI16Block) as
// int16 codes and one scale per block: x ≈ scale · code.
template <class Arch>
void QuantizeActs16(const float* xs, size_t kp, int16_t* q, float* scales) {
  for (size_t b = 0; b < kp / kI16Block; ++b) {
    const float* src = xs + b * kI16Block;
    __m256 amax = _mm256_setzero_ps();
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    for (size_t j = 0; j < kI16Block; j += 8) {
      amax = _mm256_max_ps(amax, _mm256_and_ps(_mm256_loadu_ps(src + j), abs_mask));
    }
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    const float a = _mm_cvtss_f32(m);
    const float scale = a / kI16Max;
    const __m256 inv = _mm256_set1_ps(a > 0.0f ? kI16Max / a : 0.0f);
    for (size_t j = 0; j < kI16Block; j += 16) {
      // Round to nearest even; |x · inv| <= 32767 (+ rounding), so the
      // saturating pack never clips a real value.
      const __m256i lo = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(src + j), inv));
      const __m256i hi = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(src + j + 8), inv));
      // packs interleaves 128-bit lanes; permute restores input order.
      const __m256i packed = _mm256_permute4x64_epi64(_mm256_packs_epi32(lo, hi), 0xD8);
      _mm256_store_si256(reinterpret_cast<__m256i*>(q + b * kI16Block + j), packed);
    }
    scales[b] = scale;
  }
}

// coef[g] = s_w[g] · s_x[g] for the groups of one row.
template <class Arch>
inline void RowCoefs(const uint16_t* wscales, const float* xscales, size_t groups, float* coef) {
  size_t g = 0;
  for (; g + 8 <= groups; g += 8) {
    const __m256 sw =
        _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wscales + g)));
    _mm256_store_ps(coef + g, _mm256_mul_ps(sw, _mm256_load_ps(xscales + g)));
  }
  for (; g < groups; ++g) coef[g] = _cvtsh_ss(wscales[g]) * xscales[g];
}

template <class Arch>
inline float HsumPs256(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// out[r] = Σ_g coef[r][g] · Σ_{k in g} w_k · xq_k for R rows rows[r] of
// 32-byte groups. The x loads are shared by the R rows; each row's
// arithmetic is the same for any R, so R never changes a result.
// Prefetch: PrefetchWeights once per 64-byte line (every second group).
template <class Arch, size_t R>
inline void Int8I16Rows(const uint8_t* const (&rows)[R], const int16_t* xq, const int16_t* xeo,
                        const float* const (&coef)[R], size_t groups, float (&out)[R]) {
  static_assert(2 * kI16Block == 64);
#if defined(__AVX512BW__)
  if constexpr (kAvx512<Arch>) {
    // Two groups (one 64-byte line) per step without widening bytes: the
    // line as 32 words, whose high bytes are the odd codes (vpsraw 8) and
    // whose low bytes are the even ones (vpsllw 8, vpsraw 8), each times x
    // split the same way (xeo: per 64 inputs, the 32 even then the 32 odd
    // codes). Lane i of the sum holds codes 4i..4i+3 exactly, so lanes 0-7
    // are group g and 8-15 group g + 1, scaled by coef[g] / coef[g + 1].
    // Against one sign-extending load per group (session 16, Zen 4 VM, M=1,
    // bw_frac_paired, three alternated rounds): 9216x2304 0.79-0.80 -> 0.84-
    // 0.85, 2304x2304 0.79 -> 0.83-0.84 (cache-resident it computes slightly
    // slower, 42 vs 45 GB/s at 1024x2304: the gain is in the streaming).
    const __m512i pair_idx = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    __m512 acc0[R], acc1[R];
    for (size_t r = 0; r < R; ++r) acc0[r] = acc1[r] = _mm512_setzero_ps();
    auto pair = [&](size_t g, __m512(&acc)[R]) __attribute__((always_inline)) {
      const int16_t* x = xeo + g * kI16Block;
      const __m512i xe = _mm512_load_si512(x), xo = _mm512_load_si512(x + 32);
      for (size_t r = 0; r < R; ++r) {
        PrefetchWeights(rows[r] + g * kI16Block);
        const __m512i w = _mm512_loadu_si512(rows[r] + g * kI16Block);
        const __m512i odd = _mm512_srai_epi16(w, 8);
        const __m512i even = _mm512_srai_epi16(_mm512_slli_epi16(w, 8), 8);
        const __m512i p = _mm512_add_epi32(_mm512_madd_epi16(even, xe), _mm512_madd_epi16(odd, xo));
        const __m512 c = _mm512_permutexvar_ps(
            pair_idx, _mm512_castps128_ps512(_mm_castsi128_ps(
                          _mm_loadl_epi64(reinterpret_cast<const __m128i*>(coef[r] + g)))));
        acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), c, acc[r]);
      }
    };
    size_t g = 0;
    for (; g + 4 <= groups; g += 4) {
      pair(g, acc0);
      pair(g + 2, acc1);
    }
    for (; g + 2 <= groups; g += 2) pair(g, acc0);
    for (size_t r = 0; r < R; ++r) {
      if (g < groups) {  // the last group alone, x in input order
        const __m512i w = _mm512_cvtepi8_epi16(
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(rows[r] + g * kI16Block)));
        const __m512i p = _mm512_madd_epi16(w, _mm512_load_si512(xq + g * kI16Block));
        acc1[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_set1_ps(coef[r][g]), acc1[r]);
      }
      const __m512 s = _mm512_add_ps(acc0[r], acc1[r]);
      out[r] =
          HsumPs256<Arch>(_mm256_add_ps(_mm512_castps512_ps256(s), _mm512_extractf32x8_ps(s, 1)));
    }
    return;
  }
#endif
  (void)xeo;  // the 256-bit path reads x in input order
  __m256 acc0[R], acc1[R];
  for (size_t r = 0; r < R; ++r) acc0[r] = acc1[r] = _mm256_setzero_ps();
  auto group = [&](size_t g, __m256(&acc)[R]) __attribute__((always_inline)) {
    const int16_t* x = xq + g * kI16Block;
    const __m256i x0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(x));
    const __m256i x1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(x + 16));
    for (size_t r = 0; r < R; ++r) {
      if (g % 2 == 0) PrefetchWeights(rows[r] + g * kI16Block);
      const uint8_t* p = rows[r] + g * kI16Block;
      const __m256i w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
      const __m256i w1 =
          _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16)));
      const __m256i s = _mm256_add_epi32(_mm256_madd_epi16(w0, x0), _mm256_madd_epi16(w1, x1));
      acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(coef[r][g]), acc[r]);
    }
  };
  size_t g = 0;
  for (; g + 2 <= groups; g += 2) {
    group(g, acc0);
    group(g + 1, acc1);
  }
  if (g < groups) group(g, acc0);
  for (size_t r = 0; r < R; ++r) out[r] = HsumPs256<Arch>(_mm256_add_ps(acc0[r], acc1[r]));
}

// y[n] = row n · x for n in [n_begin, n_end), x one row of f32 activations.
template <class Arch>
void GemvInt8I16(const QTensor& w, const float* x, float* y, size_t n_begin, size_t n_end) {
  const TensorDesc& d = w.desc;
  const size_t kp = d.padded_cols, groups = d.groups_per_row;
  const float* xs = StoredX<Arch>(x, 1, d.cols, w.perm, kp);
  int16_t* xq = static_cast<int16_t*>(Scratch<Arch, 5>(kp * sizeof(int16_t)));
  // sx, then the coefficients of the two rows of a step, 64-byte aligned.
  float* sx = static_cast<float*>(Scratch<Arch, 6>(3 * groups * sizeof(float) + 128));
  float* coef = sx + (groups + 15) / 16 * 16;
  QuantizeActs16<Arch>(xs, kp, xq, sx);
  const int16_t* xeo = xq;
#if defined(__AVX512BW__)
  if constexpr (kAvx512<Arch>) {
    // Per 64 inputs: the even codes, then the odd ones (Int8I16Row).
    int16_t* split = static_cast<int16_t*>(Scratch<Arch, 7>(kp * sizeof(int16_t)));
    const __m512i even_idx =
        _mm512_set_epi16(62, 60, 58, 56, 54, 52, 50, 48, 46, 44, 42, 40, 38, 36, 34, 32, 30, 28, 26,
                         24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i odd_idx = _mm512_add_epi16(even_idx, _mm512_set1_epi16(1));
    for (size_t k = 0; k + 64 <= kp; k += 64) {
      const __m512i a = _mm512_load_si512(xq + k), b = _mm512_load_si512(xq + k + 32);
      _mm512_store_si512(split + k, _mm512_permutex2var_epi16(a, even_idx, b));
      _mm512_store_si512(split + k + 32, _mm512_permutex2var_epi16(a, odd_idx, b));
    }
    xeo = split;
  }
#endif
  // Two rows per step that lie half the range apart (two sequential
  // streams sharing every x load), as the f32/bf16 decode (Gemv in
  // matmul-inl.h). Smaller gain here, where x is int16 and fits L1: session
  // 18, Zen 5 VM, alternated, Gemma-2-2B int8 at 2 threads paired 78.3 /
  // 79.1 / 77.6 % against 77.5 / 77.3 / 75.8 % one row at a time.
  // y[ns[r]] for the R rows ns; row r's coefficients at coef + r · stride.
  const size_t coef_stride = (groups + 15) / 16 * 16;
  auto rows = [&]<size_t R>(const size_t(&ns)[R]) {
    const uint8_t* data[R];
    const float* coefs[R];
    for (size_t r = 0; r < R; ++r) {
      float* c = coef + r * coef_stride;
      RowCoefs<Arch>(w.scales + ns[r] * groups, sx, groups, c);
      data[r] = w.data + ns[r] * d.row_bytes;
      coefs[r] = c;
    }
    float out[R];
    Int8I16Rows<Arch, R>(data, xq, xeo, coefs, groups, out);
    for (size_t r = 0; r < R; ++r) y[ns[r]] = out[r];
  };
  const size_t half = (n_end - n_begin) / 2;
  for (size_t i = 0; i < half; ++i) rows({n_begin + i, n_begin + i + half});
  for (size_t n = n_begin + 2 * half; n < n_end; ++n) rows({n});
}

// The int8 entry of x86 tables: decode here, prefill through the decoded
// f32 panels of Matmul.
template <class Arch>
void MatmulInt8X86(const QTensor& w, const float* x, size_t m, float* y, size_t n_begin,
                   size_t n_end) {
  if (m != 1) return Matmul<Arch, Format::kInt8>(w, x, m, y, n_begin, n_end);
  CheckMatmulArgs(w, Format::kInt8, n_begin, n_end);
  if (n_begin == n_end) return;
#if defined(__AVX512F__) && defined(__AVX2__) && defined(__FMA__)
  // Long rows (K >= kLongRowK) decode on 256-bit vectors in the avx512
  // table: interleaved A/B at 2304×9216, M=1 (session 7) read 0.86 / 0.86 of
  // the probe with ymm against 0.78 / 0.77 with zmm; at K = 2304 zmm stays
  // ahead (0.99 vs 0.95 for the avx2 table's ymm code).
  if constexpr (std::is_same_v<Arch, xsimd::avx512bw>) {
    if (w.desc.padded_cols >= kLongRowK) {
      return GemvInt8I16<avx512_ymm>(w, x, y, n_begin, n_end);
    }
  }
#endif
  GemvInt8I16<Arch>(w, x, y, n_begin, n_end);
}

#endif  // AVX2 + FMA + F16C

}  // namespace mm
}  // namespace qlm::kernels::simd
