// int8-activation matmul (MatmulQ8Fn) for int8 and q4 weights with AVX2
// integer dot products (vpmaddubsw + vpmaddwd), 256 bits wide. Used by the
// avx2 table and by the avx512 table on CPUs without VNNI (the VNNI kernels
// in isa_avx512_vnni.cc replace them where available). Other ISAs (NEON) get
// portable integer loops the compiler vectorizes. Included from
// matmul-inl.h.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "kernels/registry.h"
#include "kernels/scalar/matmul.h"

namespace qlm::kernels::simd {
namespace mm {

// Per act row and weight group: Σ_{blocks b of g} s_x[b] · Σ q_x over b, for
// the zero-point term of q4 (per-thread scratch, [m, groups_per_row]).
template <class Arch>
const float* Q4ZeroTerms(const QTensor& w, const Q8Acts& x) {
  const size_t gpr = w.desc.groups_per_row, bpg = w.desc.group_size / x.block;
  const size_t xblocks = x.k_padded / x.block, nb = w.desc.padded_cols / x.block;
  float* zt = static_cast<float*>(Scratch<Arch, 2>(x.m * gpr * sizeof(float)));
  for (size_t i = 0; i < x.m; ++i) {
    for (size_t g = 0; g < gpr; ++g) {
      float s = 0.0f;
      for (size_t bb = 0; bb < bpg; ++bb) {
        const size_t b = g * bpg + bb;
        if (b >= nb) break;  // a last group may be partial
        s += x.scales[i * xblocks + b] * static_cast<float>(x.sums[i * xblocks + b]);
      }
      zt[i * gpr + g] = s;
    }
  }
  return zt;
}

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)

template <class Arch>
inline float Hsum256(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Σ over pairs of adjacent int16 -> int32 lanes, as floats: the second
// half of a u8·s8 dot product after vpmaddubsw.
template <class Arch>
inline __m256 SumPairs16(__m256i p16) {
  return _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, _mm256_set1_epi16(1)));
}

template <class Arch>
inline __m256 DotU8S8(__m256i u, __m256i s) {
  return SumPairs16<Arch>(_mm256_maddubs_epi16(u, s));
}

// Rows [n0, n0 + nr) (nr <= R) × act rows [i0, i0 + MT) of an int8 weight.
// Signed × signed via |w| · sign(x, w).
template <class Arch, size_t R, size_t MT>
void Q8Int8TileAvx2(const QTensor& w, const Q8Acts& x, size_t n0, size_t nr, size_t i0, float* y) {
  const TensorDesc& d = w.desc;
  const size_t xblocks = x.k_padded / kQ8ActBlock;
  const uint8_t* rows[R];
  const uint16_t* wscales[R];
  size_t idx[R];
  for (size_t r = 0; r < R; ++r) {
    idx[r] = n0 + std::min(r, nr - 1);
    rows[r] = w.data + idx[r] * d.row_bytes;
    wscales[r] = w.scales + idx[r] * d.groups_per_row;
  }
  __m256 acc[MT][R];
  for (size_t i = 0; i < MT; ++i) {
    for (size_t r = 0; r < R; ++r) acc[i][r] = _mm256_setzero_ps();
  }
  for (size_t b = 0; b < d.groups_per_row; ++b) {
    __m256i wv[R], wabs[R];
    float sw[R];
    for (size_t r = 0; r < R; ++r) {
      wv[r] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(rows[r] + b * 32));
      wabs[r] = _mm256_abs_epi8(wv[r]);
      sw[r] = _cvtsh_ss(wscales[r][b]);
    }
    for (size_t i = 0; i < MT; ++i) {
      const __m256i xq = _mm256_loadu_si256(
          reinterpret_cast<const __m256i*>(x.q + (i0 + i) * x.k_padded + b * 32));
      const float sx = x.scales[(i0 + i) * xblocks + b];
      for (size_t r = 0; r < R; ++r) {
        const __m256 dot = DotU8S8<Arch>(wabs[r], _mm256_sign_epi8(xq, wv[r]));
        acc[i][r] = _mm256_fmadd_ps(dot, _mm256_set1_ps(sw[r] * sx), acc[i][r]);
      }
    }
  }
  for (size_t i = 0; i < MT; ++i) {
    for (size_t r = 0; r < R; ++r) {
      if (r < nr) y[(i0 + i) * d.rows + idx[r]] = Hsum256<Arch>(acc[i][r]);
    }
  }
}

// Rows [n0, n0 + nr) (nr <= R) × act rows [i0, i0 + MT) of a q4 weight. Each
// 32-byte block yields two 32-input halves (low / high nibbles), each one
// activation block of 32; codes are unsigned, so u8 · s8 maddubs applies
// directly and the zero point is subtracted once per group via the zero
// terms. Wide (activation blocks of 64, so groups of 64 or 128): both
// halves share the act scale and the weight scale, so their int16 pair
// sums are added before one vpmaddwd, cvt and FMA (|Σ| ≤ 4 · 15 · 127 fits
// int16).
template <class Arch, size_t R, size_t MT, bool Wide>
void Q8Q4TileAvx2(const QTensor& w, const Q8Acts& x, const float* zt, size_t n0, size_t nr,
                  size_t i0, float* y) {
  const TensorDesc& d = w.desc;
  const size_t xblocks = x.k_padded / x.block, gs = d.group_size;
  const size_t nblocks = d.padded_cols / kQ4BlockSize;
  const uint8_t* rows[R];
  const uint16_t* wscales[R];
  size_t idx[R];
  for (size_t r = 0; r < R; ++r) {
    idx[r] = n0 + std::min(r, nr - 1);
    rows[r] = w.data + idx[r] * d.row_bytes;
    wscales[r] = w.scales + idx[r] * d.groups_per_row;
  }
  const __m256i mask = _mm256_set1_epi8(0x0F);
  __m256 acc[MT][R];
  for (size_t i = 0; i < MT; ++i) {
    for (size_t r = 0; r < R; ++r) acc[i][r] = _mm256_setzero_ps();
  }
  for (size_t j = 0; j < nblocks; ++j) {
    __m256i lo[R], hi[R];
    float s_lo[R], s_hi[R];
    for (size_t r = 0; r < R; ++r) {
      const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(rows[r] + j * 32));
      lo[r] = _mm256_and_si256(b, mask);
      hi[r] = _mm256_and_si256(_mm256_srli_epi16(b, 4), mask);
      s_lo[r] = _cvtsh_ss(wscales[r][(j * 64) / gs]);
      s_hi[r] = _cvtsh_ss(wscales[r][(j * 64 + 32) / gs]);
    }
    for (size_t i = 0; i < MT; ++i) {
      const int8_t* xq = x.q + (i0 + i) * x.k_padded + j * 64;
      const __m256i xl = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq));
      const __m256i xh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + 32));
      const float* sx = x.scales + (i0 + i) * xblocks;
      for (size_t r = 0; r < R; ++r) {
        if constexpr (Wide) {
          const __m256i p16 =
              _mm256_add_epi16(_mm256_maddubs_epi16(lo[r], xl), _mm256_maddubs_epi16(hi[r], xh));
          const __m256 dot = SumPairs16<Arch>(p16);
          acc[i][r] = _mm256_fmadd_ps(dot, _mm256_set1_ps(s_lo[r] * sx[j]), acc[i][r]);
        } else {
          acc[i][r] = _mm256_fmadd_ps(DotU8S8<Arch>(lo[r], xl), _mm256_set1_ps(s_lo[r] * sx[2 * j]),
                                      acc[i][r]);
          acc[i][r] = _mm256_fmadd_ps(DotU8S8<Arch>(hi[r], xh),
                                      _mm256_set1_ps(s_hi[r] * sx[2 * j + 1]), acc[i][r]);
        }
      }
    }
  }
  for (size_t i = 0; i < MT; ++i) {
    const float* zti = zt + (i0 + i) * d.groups_per_row;
    for (size_t r = 0; r < R; ++r) {
      if (r >= nr) break;  // constant bound keeps acc in registers
      float corr = 0.0f;
      const uint8_t* zeros = w.zeros + idx[r] * d.groups_per_row;
      for (size_t g = 0; g < d.groups_per_row; ++g) {
        corr += _cvtsh_ss(wscales[r][g]) * static_cast<float>(zeros[g]) * zti[g];
      }
      y[(i0 + i) * d.rows + idx[r]] = Hsum256<Arch>(acc[i][r]) - corr;
    }
  }
}

inline constexpr size_t kQ8TileM = 2;

template <class Arch>
void MatmulQ8Int8Avx2(const QTensor& w, const Q8Acts& x, float* y, size_t n_begin, size_t n_end) {
  CheckMatmulQ8Args(w, Format::kInt8, x, n_begin, n_end);
  // Decode (m == 1): one row at a time, so the weights are read as one
  // sequential stream (see GemvRows in matmul-inl.h). Otherwise weight rows outside, act rows
  // inside: each pair of weight rows is read from memory once and reused
  // from L1 for every act row.
  if (x.m == 1) {
    for (size_t n = n_begin; n < n_end; ++n) Q8Int8TileAvx2<Arch, 1, 1>(w, x, n, 1, 0, y);
    return;
  }
  for (size_t n0 = n_begin; n0 < n_end; n0 += 2) {
    const size_t nr = std::min<size_t>(2, n_end - n0);
    for (size_t i0 = 0; i0 < x.m; i0 += kQ8TileM) {
      const size_t mt = std::min(kQ8TileM, x.m - i0);
      if (mt == 2) {
        Q8Int8TileAvx2<Arch, 2, 2>(w, x, n0, nr, i0, y);
      } else {
        Q8Int8TileAvx2<Arch, 2, 1>(w, x, n0, nr, i0, y);
      }
    }
  }
}

template <class Arch, bool Wide>
void MatmulQ8Q4Avx2Tiles(const QTensor& w, const Q8Acts& x, const float* zt, float* y,
                         size_t n_begin, size_t n_end) {
  if (x.m == 1) {  // one sequential stream, as above
    for (size_t n = n_begin; n < n_end; ++n) Q8Q4TileAvx2<Arch, 1, 1, Wide>(w, x, zt, n, 1, 0, y);
    return;
  }
  for (size_t n0 = n_begin; n0 < n_end; n0 += 2) {
    const size_t nr = std::min<size_t>(2, n_end - n0);
    for (size_t i0 = 0; i0 < x.m; i0 += kQ8TileM) {
      const size_t mt = std::min(kQ8TileM, x.m - i0);
      if (mt == 2) {
        Q8Q4TileAvx2<Arch, 2, 2, Wide>(w, x, zt, n0, nr, i0, y);
      } else {
        Q8Q4TileAvx2<Arch, 2, 1, Wide>(w, x, zt, n0, nr, i0, y);
      }
    }
  }
}

template <class Arch>
void MatmulQ8Q4Avx2(const QTensor& w, const Q8Acts& x, float* y, size_t n_begin, size_t n_end) {
  CheckMatmulQ8Args(w, Format::kQ4, x, n_begin, n_end);
  if (x.m == 0 || n_begin == n_end) return;
  const float* zt = Q4ZeroTerms<Arch>(w, x);
  if (x.block == kQ8ActBlockWide)
    return MatmulQ8Q4Avx2Tiles<Arch, true>(w, x, zt, y, n_begin, n_end);
  MatmulQ8Q4Avx2Tiles<Arch, false>(w, x, zt, y, n_begin, n_end);
}

#endif  // __AVX2__ && __FMA__ && __F16C__

// Portable int8-activation kernels for ISAs without hand-written ones
// (NEON): plain 32-wide integer loops the compiler vectorizes (widening
// multiply-accumulate), one weight row at a time, with the row's f32 scales
// converted once and reused for every act row.
template <class Arch>
inline int32_t Dot32(const int8_t* a, const int8_t* b) {
  int32_t s = 0;
  for (size_t j = 0; j < 32; ++j) s += int32_t{a[j]} * int32_t{b[j]};
  return s;
}

template <class Arch>
void MatmulQ8Int8Portable(const QTensor& w, const Q8Acts& x, float* y, size_t n_begin,
                          size_t n_end) {
  CheckMatmulQ8Args(w, Format::kInt8, x, n_begin, n_end);
  const TensorDesc& d = w.desc;
  const size_t xblocks = x.k_padded / kQ8ActBlock, groups = d.groups_per_row;
  float* sw = static_cast<float*>(Scratch<Arch, 3>(groups * sizeof(float)));
  for (size_t n = n_begin; n < n_end; ++n) {
    const int8_t* row = reinterpret_cast<const int8_t*>(w.data + n * d.row_bytes);
    HalfsToFloats<Arch>(w.scales + n * groups, groups, sw);
    for (size_t i = 0; i < x.m; ++i) {
      const int8_t* xq = x.q + i * x.k_padded;
      const float* sx = x.scales + i * xblocks;
      float acc = 0.0f;
      for (size_t b = 0; b < groups; ++b) {
        acc += sw[b] * sx[b] * static_cast<float>(Dot32<Arch>(row + 32 * b, xq + 32 * b));
      }
      y[i * d.rows + n] = acc;
    }
  }
}

template <class Arch>
void MatmulQ8Q4Portable(const QTensor& w, const Q8Acts& x, float* y, size_t n_begin, size_t n_end) {
  CheckMatmulQ8Args(w, Format::kQ4, x, n_begin, n_end);
  if (x.m == 0 || n_begin == n_end) return;
  const TensorDesc& d = w.desc;
  const size_t xblocks = x.k_padded / x.block, groups = d.groups_per_row;
  const size_t nblocks = d.padded_cols / kQ4BlockSize, gs = d.group_size;
  const unsigned wide = Q8ActHalfShift(x);
  const float* zt = Q4ZeroTerms<Arch>(w, x);
  float* sw = static_cast<float*>(Scratch<Arch, 3>(groups * sizeof(float)));
  int8_t* codes = static_cast<int8_t*>(Scratch<Arch, 5>(d.padded_cols));
  for (size_t n = n_begin; n < n_end; ++n) {
    const uint8_t* row = w.data + n * d.row_bytes;
    HalfsToFloats<Arch>(w.scales + n * groups, groups, sw);
    // Unpack the row's nibbles once; every act row reuses them.
    for (size_t j = 0; j < nblocks; ++j) {
      for (size_t b = 0; b < 32; ++b) {
        codes[64 * j + b] = static_cast<int8_t>(row[32 * j + b] & 0x0F);
        codes[64 * j + 32 + b] = static_cast<int8_t>(row[32 * j + b] >> 4);
      }
    }
    const uint8_t* zeros = w.zeros + n * groups;
    for (size_t i = 0; i < x.m; ++i) {
      const int8_t* xq = x.q + i * x.k_padded;
      const float* sx = x.scales + i * xblocks;
      float acc = 0.0f;
      for (size_t b = 0; b < 2 * nblocks; ++b) {
        acc += sw[(32 * b) / gs] * sx[b >> wide] *
               static_cast<float>(Dot32<Arch>(codes + 32 * b, xq + 32 * b));
      }
      float corr = 0.0f;
      for (size_t g = 0; g < groups; ++g) {
        corr += sw[g] * static_cast<float>(zeros[g]) * zt[i * groups + g];
      }
      y[i * d.rows + n] = acc - corr;
    }
  }
}

template <class Arch>
void FillMatmulQ8(KernelTable& t) {
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
  if constexpr (kAvx2<Arch> || kAvx512<Arch>) {
    t.matmul_q8[static_cast<int>(Format::kInt8)] = MatmulQ8Int8Avx2<Arch>;
    t.matmul_q8[static_cast<int>(Format::kQ4)] = MatmulQ8Q4Avx2<Arch>;
    return;
  }
#endif
  t.matmul_q8[static_cast<int>(Format::kInt8)] = MatmulQ8Int8Portable<Arch>;
  t.matmul_q8[static_cast<int>(Format::kQ4)] = MatmulQ8Q4Portable<Arch>;
}

}  // namespace mm

using mm::FillMatmulQ8;

}  // namespace qlm::kernels::simd
