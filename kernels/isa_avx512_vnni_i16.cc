// AVX-512 VNNI prefill (m >= 4) of int8 weights with f32 activations,
// through 16-bit activation codes and vpdpwssd (s16 × s16 pairs → s32).
// This file alone is compiled with -mavx512vnni (no BF16 needed); the
// registry patches its entry into the avx512 table only when the CPU reports
// VNNI, and the entry hands m < 4 (decode included) to the entry it replaced.
//
// Why: the f32-activation prefill decodes int8 weights to f32 panels and
// runs f32 FMAs, 16 multiply-adds per instruction, so one Zen 4 core tops
// out near ~80 GFLOP/s on real shapes (M = 64, docs/benchmarks.md);
// Gemma-2-2B's pp512 ≥ 60 t/s on two threads needs ~120 per core. The int8-activation path
// (vpdpbusd) is fast but rounds activations to 8 bits per 32-block, which costs the int8 model 0.3
// points of top-1 agreement (core/forward.h). Here x is rounded to int16 codes per 32-block instead
// (error ≤ 2^-16 of the block's |x|max, ~250× below the int8 weights' own rounding; the same codes
// the int8 decode uses), and the products are exact in int32.
//
// Layout: 16 weight rows sit in the 16 lanes of a vector (one lane per
// output row), so no horizontal reduction is ever needed. Per tile of 32
// rows × 256 inputs the weights are repacked once per call, then every
// activation row streams past the tile (in L1, 16 KiB):
//  * a 4-byte gather per row yields, per lane, inputs (k0, k1, k2, k3) of
//    its row; shifting the 16-bit words left and right by 8 gives words
//    (k0, k2) in E and (k1, k3) in O, sign-extended: two s16 pairs;
//  * activation codes are stored in the matching order (k0, k2, k1, k3)
//    per 4 inputs, so one 32-bit broadcast feeds E and the next one O;
//  * per 32-input group, 16 vpdpwssd sum each row's int8 × int16 products
//    exactly (|Σ| ≤ 32 · 127 · 32767 < 2^31); then one cvt, one multiply
//    (row scales × act scale) and one FMA add it to the f32 result.
// Each lane does the same arithmetic whatever row it holds, so a row's
// result does not depend on how [n_begin, n_end) was split across threads.

// GCC 12's intrinsic headers build "undefined" vectors as `__m512 y = y;`,
// which -Wmaybe-uninitialized flags once inlined.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "base/aligned_buffer.h"
#include "kernels/isa_tables.h"
#include "kernels/registry.h"
#include "kernels/scalar/matmul.h"
#include "quant/format.h"

namespace qlm::kernels {
namespace {

constexpr size_t kGroup = kInt8GroupSize;  // inputs per weight scale and per act scale
constexpr size_t kLanes = 16;              // rows per vector
constexpr size_t kRowVecs = 2;             // vectors of rows per tile: 32 rows
constexpr size_t kTileRows = kLanes * kRowVecs;
constexpr size_t kChunkGroups = 8;             // 256 inputs per tile: 16 KiB of repacked weights
constexpr size_t kQuadsPerGroup = kGroup / 4;  // 4-input steps per group
constexpr size_t kTileTokens = 4;              // activation rows per micro-tile (registers)
// Below this many activation rows the repack costs more than it saves; those
// calls (and decode) go to the entry this one replaced.
constexpr size_t kMinRows = 4;

MatmulFn g_fallback = nullptr;  // set once, when the table is built

template <int Slot>
void* Scratch(size_t bytes) {
  thread_local AlignedBuffer buf;
  if (buf.size() < bytes) buf.Resize(bytes);
  return buf.data();
}

inline __mmask16 FirstLanes(size_t n) {
  return static_cast<__mmask16>(n >= 16 ? 0xFFFFu : (1u << n) - 1u);
}

// Rows of x [m, k] as int16 codes [m, kp] in (k0, k2, k1, k3) order per 4
// inputs, zero-padded, and one scale per 32-block [m, groups]:
// x ≈ scale · code, scale = |x|max / 32767, code = nearest-even(x / scale).
void QuantizeRows16(const float* x, size_t m, size_t k, size_t kp, int16_t* q, float* scales) {
  const size_t groups = kp / kGroup;
  // Word order within each 8-byte quad: words 0, 2, 1, 3.
  const __m512i order =
      _mm512_broadcast_i32x4(_mm_setr_epi8(0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15));
  const __m512 abs_mask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7FFFFFFF));
  for (size_t i = 0; i < m; ++i) {
    const float* row = x + i * k;
    for (size_t g = 0; g < groups; ++g) {
      const size_t k0 = g * kGroup;
      const size_t n0 = k0 < k ? std::min<size_t>(16, k - k0) : 0;
      const size_t n1 = k0 + 16 < k ? std::min<size_t>(16, k - k0 - 16) : 0;
      const __m512 a = _mm512_maskz_loadu_ps(FirstLanes(n0), row + std::min(k0, k));
      const __m512 b = _mm512_maskz_loadu_ps(FirstLanes(n1), row + std::min(k0 + 16, k));
      const float amax = _mm512_reduce_max_ps(
          _mm512_max_ps(_mm512_and_ps(a, abs_mask), _mm512_and_ps(b, abs_mask)));
      // A block too small for 32767 / amax to be finite quantizes to zeros.
      const float inv = amax >= 0x1p-110f ? 32767.0f / amax : 0.0f;
      const __m512 vinv = _mm512_set1_ps(inv);
      // Nearest-even conversion; |x · inv| <= 32767 up to rounding, and the
      // saturating narrowing never clips a real value.
      const __m256i qa = _mm512_cvtsepi32_epi16(_mm512_cvtps_epi32(_mm512_mul_ps(a, vinv)));
      const __m256i qb = _mm512_cvtsepi32_epi16(_mm512_cvtps_epi32(_mm512_mul_ps(b, vinv)));
      const __m512i codes = _mm512_inserti64x4(_mm512_castsi256_si512(qa), qb, 1);
      _mm512_store_si512(q + i * kp + k0, _mm512_shuffle_epi8(codes, order));
      scales[i * groups + g] = amax / 32767.0f;
    }
  }
}

// One tile of rows, repacked: per group, per 4-input step, per row vector,
// the E and O vectors; and per group and row vector the f32 weight scales.
struct Panel {
  __m512i* w;  // [groups][kQuadsPerGroup][kRowVecs][2]
  __m512* s;   // [groups][kRowVecs]
};

// Repacks groups [g0, g0 + gc) of the tile's rows: `rows` (short tiles
// repeat their last row), whose byte offsets from `tile` (the first row's
// data) are in `offs`.
void Repack(const QTensor& w, const uint8_t* tile, const __m512i offs[kRowVecs],
            const size_t rows[kTileRows], size_t g0, size_t gc, Panel p) {
  const size_t groups = w.desc.groups_per_row;
  for (size_t g = 0; g < gc; ++g) {
    const uint8_t* base = tile + (g0 + g) * kGroup;
    for (size_t s = 0; s < kQuadsPerGroup; ++s) {
      for (size_t r = 0; r < kRowVecs; ++r) {
        const __m512i v = _mm512_i32gather_epi32(offs[r], base + 4 * s, 1);
        __m512i* dst = p.w + ((g * kQuadsPerGroup + s) * kRowVecs + r) * 2;
        dst[0] = _mm512_srai_epi16(_mm512_slli_epi16(v, 8), 8);  // k0, k2
        dst[1] = _mm512_srai_epi16(v, 8);                        // k1, k3
      }
    }
    for (size_t r = 0; r < kRowVecs; ++r) {
      alignas(64) uint16_t h[kLanes];
      for (size_t j = 0; j < kLanes; ++j) h[j] = w.scales[rows[r * kLanes + j] * groups + g0 + g];
      p.s[g * kRowVecs + r] = _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<__m256i*>(h)));
    }
  }
}

inline __m512i Broadcast32(const int16_t* p) {
  int32_t v;
  std::memcpy(&v, p, sizeof(v));
  return _mm512_set1_epi32(v);
}

// y[t, row] (+)= Σ over the panel's gc groups, for T activation rows.
template <size_t T>
void MicroTile(const Panel& p, size_t gc, const int16_t* xq, size_t kp, const float* sx,
               size_t groups, float* y, size_t ldy, const __mmask16 mask[kRowVecs],
               bool accumulate) {
  constexpr size_t R = kRowVecs;
  __m512 acc[T][R];
  for (size_t t = 0; t < T; ++t) {
    for (size_t r = 0; r < R; ++r) {
      acc[t][r] = accumulate ? _mm512_maskz_loadu_ps(mask[r], y + t * ldy + r * kLanes)
                             : _mm512_setzero_ps();
    }
  }
  for (size_t g = 0; g < gc; ++g) {
    const __m512i* pw = p.w + g * kQuadsPerGroup * R * 2;
    __m512i dot[T][R];
    // First step initialises the sums (vpmaddwd), the rest accumulate.
    {
      __m512i e[R], o[R];
      for (size_t r = 0; r < R; ++r) {
        e[r] = _mm512_load_si512(pw + r * 2);
        o[r] = _mm512_load_si512(pw + r * 2 + 1);
      }
      for (size_t t = 0; t < T; ++t) {
        const int16_t* xt = xq + t * kp + g * kGroup;
        const __m512i xe = Broadcast32(xt), xo = Broadcast32(xt + 2);
        for (size_t r = 0; r < R; ++r) {
          dot[t][r] = _mm512_dpwssd_epi32(_mm512_madd_epi16(e[r], xe), o[r], xo);
        }
      }
    }
    for (size_t s = 1; s < kQuadsPerGroup; ++s) {
      __m512i e[R], o[R];
      for (size_t r = 0; r < R; ++r) {
        e[r] = _mm512_load_si512(pw + (s * R + r) * 2);
        o[r] = _mm512_load_si512(pw + (s * R + r) * 2 + 1);
      }
      for (size_t t = 0; t < T; ++t) {
        const int16_t* xt = xq + t * kp + g * kGroup + 4 * s;
        const __m512i xe = Broadcast32(xt), xo = Broadcast32(xt + 2);
        for (size_t r = 0; r < R; ++r) {
          dot[t][r] = _mm512_dpwssd_epi32(_mm512_dpwssd_epi32(dot[t][r], e[r], xe), o[r], xo);
        }
      }
    }
    for (size_t t = 0; t < T; ++t) {
      const __m512 st = _mm512_set1_ps(sx[t * groups + g]);
      for (size_t r = 0; r < R; ++r) {
        acc[t][r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot[t][r]),
                                    _mm512_mul_ps(p.s[g * R + r], st), acc[t][r]);
      }
    }
  }
  for (size_t t = 0; t < T; ++t) {
    for (size_t r = 0; r < R; ++r) {
      _mm512_mask_storeu_ps(y + t * ldy + r * kLanes, mask[r], acc[t][r]);
    }
  }
}

template <size_t T = kTileTokens>
void MicroTileDispatch(size_t mt, const Panel& p, size_t gc, const int16_t* xq, size_t kp,
                       const float* sx, size_t groups, float* y, size_t ldy,
                       const __mmask16 mask[kRowVecs], bool accumulate) {
  if constexpr (T > 1) {
    if (mt < T) {
      return MicroTileDispatch<T - 1>(mt, p, gc, xq, kp, sx, groups, y, ldy, mask, accumulate);
    }
  }
  MicroTile<T>(p, gc, xq, kp, sx, groups, y, ldy, mask, accumulate);
}

void MatmulInt8I16Vnni(const QTensor& w, const float* x, size_t m, float* y, size_t n_begin,
                       size_t n_end) {
  if (m < kMinRows) return g_fallback(w, x, m, y, n_begin, n_end);
  CheckMatmulArgs(w, Format::kInt8, n_begin, n_end);
  if (n_begin == n_end) return;
  const TensorDesc& d = w.desc;
  const size_t kp = d.padded_cols, groups = d.groups_per_row, ldy = d.rows;
  int16_t* xq = static_cast<int16_t*>(Scratch<0>(m * kp * sizeof(int16_t)));
  float* sx = static_cast<float*>(Scratch<1>(m * groups * sizeof(float)));
  QuantizeRows16(x, m, d.cols, kp, xq, sx);
  Panel p;
  p.w = static_cast<__m512i*>(
      Scratch<2>(kChunkGroups * kQuadsPerGroup * kRowVecs * 2 * sizeof(__m512i)));
  p.s = static_cast<__m512*>(Scratch<3>(kChunkGroups * kRowVecs * sizeof(__m512)));
  for (size_t n0 = n_begin; n0 < n_end; n0 += kTileRows) {
    const size_t nr = std::min(kTileRows, n_end - n0);
    size_t rows[kTileRows];
    alignas(64) int32_t off[kTileRows];
    for (size_t j = 0; j < kTileRows; ++j) {
      rows[j] = n0 + std::min(j, nr - 1);
      off[j] = static_cast<int32_t>((rows[j] - n0) * d.row_bytes);
    }
    __m512i offs[kRowVecs];
    __mmask16 mask[kRowVecs];
    for (size_t r = 0; r < kRowVecs; ++r) {
      offs[r] = _mm512_load_si512(off + r * kLanes);
      mask[r] = FirstLanes(nr > r * kLanes ? nr - r * kLanes : 0);
    }
    for (size_t g0 = 0; g0 < groups; g0 += kChunkGroups) {
      const size_t gc = std::min(kChunkGroups, groups - g0);
      Repack(w, w.data + n0 * d.row_bytes, offs, rows, g0, gc, p);
      for (size_t i = 0; i < m; i += kTileTokens) {
        MicroTileDispatch(std::min(kTileTokens, m - i), p, gc, xq + i * kp + g0 * kGroup, kp,
                          sx + i * groups + g0, groups, y + i * ldy + n0, ldy, mask, g0 != 0);
      }
    }
  }
}

}  // namespace

void FillAvx512VnniI16Table(KernelTable& t) {
  g_fallback = t.matmul[static_cast<int>(Format::kInt8)];
  t.matmul[static_cast<int>(Format::kInt8)] = MatmulInt8I16Vnni;
}

}  // namespace qlm::kernels
