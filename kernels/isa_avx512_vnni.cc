// AVX-512 VNNI entries of the avx512 table: the int8-activation matmul for
// int8 and q4 weights with vpdpbusd (u8 × s8 → s32, 64 products per
// instruction). Raw intrinsics: xsimd has no VNNI. This file alone is
// compiled with -mavx512vnni; the registry patches its entries into the
// avx512 table only when the CPU reports it (Ice Lake and later, Zen 4+;
// these kernels use no BF16 instruction, so CPUs with VNNI but without
// AVX512_BF16, such as Ice Lake, get them too).
//
// Layout trick shared by both kernels: one 64-byte weight load covers two
// 32-input activation blocks, so a dot product vector holds block A's
// partial sums in lanes 0-7 and block B's in lanes 8-15. Per-call scratch
// holds the activation scales expanded to that lane pattern, and per tile of
// weight rows the f32 weight scales, so each (weight row, act row) pair
// costs vpdpbusd + cvt + mul/fma per 64 inputs.
//  * int8 weights are signed: they are flipped to u8 (w + 128) with one XOR
//    and the 128 · Σ q_x excess is subtracted once per block at the end.
//    For decode (Int8Row) four chunks' int32 partial sums are folded into
//    one vector first, the excess is subtracted there in int32, and the
//    float work is one cvt, one multiply and one FMA per 256 inputs.
//  * q4 codes are already u8. A 64-byte load holds two q4 blocks; its low
//    nibbles are inputs 0-31 and 64-95 of the 128-input chunk, its high
//    nibbles 32-63 and 96-127, so activations are copied into that order
//    once per call. High nibbles are used in place (b & 0xF0 = 16·q) and
//    the 1/16 is folded into the activation scales. The zero point is
//    subtracted once per group at the end:
//    Σ s_w·(q − z)·s_x·q_x = s_w·(Σ s_x·Σ q·q_x − z·Σ s_x·Σ q_x).
//    With activation blocks of 64 (prefill, groups of 64/128) the low
//    nibbles are shifted up to 16·q as well, and both nibbles' products go
//    into one int32 accumulator before a single cvt (Q4StepWide).
//    For decode (Q4Row) the int32 partial sums of two chunks are first
//    folded with shuffles and adds into one vector (2 lanes per block), so
//    the float work is one cvt, one multiply and one FMA per 256 inputs.
// Tiles: decode (m == 1) takes one weight row at a time, front to back, so
// the call reads its weights as ONE sequential stream: interleaving a few
// rows (each a short stream of 1-2 KiB) defeats the hardware prefetcher and
// read ~40 % slower on the Zen 4 VM this was tuned on. Otherwise 4 weight rows
// × 4 act rows, weight rows outermost so a tile's rows stay in L1 while
// every act row passes by (accumulators + decoded weights + scales fit the
// 32 zmm registers).

// GCC 12's intrinsic headers build "undefined" vectors as `__m512 y = y;`,
// which -Wmaybe-uninitialized flags once inlined; the warning's location is
// inside the header, so silencing it around the include is enough.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "base/aligned_buffer.h"
#include "kernels/isa_tables.h"
#include "kernels/registry.h"
#include "kernels/scalar/matmul.h"

namespace qlm::kernels {
namespace {

// Per-thread scratch that only grows.
template <int Slot>
void* Scratch(size_t bytes) {
  thread_local AlignedBuffer buf;
  if (buf.size() < bytes) buf.Resize(bytes);
  return buf.data();
}

// Software prefetch distance in the weight stream (bytes; 0 = the hardware
// prefetcher alone). q4 decode is nearly compute-bound on one Zen 4 core
// (~30 GB/s from L3), so the hardware prefetcher alone let the DRAM stream
// fall behind (0.59 of the read probe); prefetching 8 KiB ahead, which 2 MiB
// pages keep inside one TLB entry, raised it to 0.78 (4 KiB: 0.70, 16 KiB:
// 0.72; docs/benchmarks.md). The prefetches go to L2 (prefetcht1, locality
// 2): at 2304 inputs a row is 1152 bytes, so the line is needed ~7 rows later;
// pulling it into L1 that early only evicts the activations (A/B runs on the
// loaded machine: +5-8 % over prefetching into L1; to be confirmed idle).
constexpr size_t kPrefetchQ4 = 8192;
// The q4 decode's two other streams, the f16 scales and u8 zero points of
// each row (2 and 1 bytes per group: 36 and 18 bytes a row at 2304 inputs),
// are prefetched into L1 this many bytes of scales ahead (zeros: half as
// many bytes, the same number of rows), once per row, so that their lines
// are not demand misses in the middle of a row. Gemma-2-2B q4, tg32 at 2
// threads on the Zen 5 VM of session 20 (docs/benchmarks.md): with a
// temporary switch, 2, 4 and 8 KiB ahead into L2 each won four of four
// alternated rounds against none (+5-7 % t/s), 16 KiB read slower, and L1
// beat L2 in three of three; the final binary against the previous one won
// seven of eight rounds by ~1.5 % t/s. Storing each row's scales and zeros
// beside its codes read +10 % (an experiment; not the file layout).
constexpr size_t kPrefetchQ4Side = 2048;
constexpr size_t kPrefetchInt8 = 0;
constexpr size_t kRowsTiled = 4, kTileM = 4;

// Horizontal sum of 16 floats.
inline float Hsum(__m512 v) {
  v = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, 0x4E));
  v = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, 0xB1));
  __m128 s = _mm512_castps512_ps128(v);
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Two floats into the low half of a vector (no alignment needed).
inline __m128 Load2(const float* p) {
  return _mm_castsi128_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
}

// Mask of the first n (<= 16) lanes.
inline __mmask16 FirstLanes(size_t n) {
  return static_cast<__mmask16>(n >= 16 ? 0xFFFFu : (1u << n) - 1u);
}

// Lanes 0-7 from element a, 8-15 from element b of a 4-float vector.
inline __m512 Expand2(__m128 v, int a, int b) {
  const __m512i idx = _mm512_set_epi32(b, b, b, b, b, b, b, b, a, a, a, a, a, a, a, a);
  return _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(v));
}

// Σ_g coef[g] · terms[g] as a vector (reduced later with the accumulator).
inline __m512 DotGroups(const float* coef, const float* terms, size_t count) {
  __m512 acc = _mm512_setzero_ps();
  for (size_t g = 0; g < count; g += 16) {
    const __mmask16 m = FirstLanes(count - g);
    acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, coef + g), _mm512_maskz_loadu_ps(m, terms + g),
                          acc);
  }
  return acc;
}

// The row side of a tile, computed once and reused for every act row: f32
// weight scales and, for q4, scale · zero per group.
template <size_t R>
struct RowTile {
  size_t idx[R];  // short tiles repeat their last row
  const uint8_t* data[R];
  const float* scale[R];       // [groups]
  const float* scale_zero[R];  // [groups], q4 only
};

// f32 scales (and, for q4, scale · zero) of rows [n0, n0 + count), row-major
// [count][groups] in per-thread scratch. Converted per tile, just before the
// tile's rows are read: converting many rows ahead made the scale reads a
// burst that measurably disturbed the weight stream (int8 decode read ~30 %
// slower with 64 rows per batch on the Zen 4 VM).
inline void PrepRowScales(const QTensor& w, size_t n0, size_t count, float* s, float* sz) {
  const TensorDesc& d = w.desc;
  const size_t total = count * d.groups_per_row;
  const bool q4 = d.format == Format::kQ4;
  const uint16_t* hs = w.scales + n0 * d.groups_per_row;
  const uint8_t* zs = q4 ? w.zeros + n0 * d.groups_per_row : nullptr;
  for (size_t g = 0; g < total; g += 16) {
    const __mmask16 m = FirstLanes(total - g);
    const __m512 sv = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, hs + g));
    _mm512_mask_storeu_ps(s + g, m, sv);
    if (q4) {
      const __m512 z = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, zs + g)));
      _mm512_mask_storeu_ps(sz + g, m, _mm512_mul_ps(sv, z));
    }
  }
}

// Runs tile(rows, i0, mt) over [n_begin, n_end) × [0, m): weight-row tiles
// outermost, each tile's scales prepared once for all act rows.
template <size_t R, class TileFn>
void ForTiles(const QTensor& w, size_t m, size_t mt_max, size_t n_begin, size_t n_end,
              TileFn tile) {
  const TensorDesc& d = w.desc;
  float* s = static_cast<float*>(Scratch<3>(2 * R * d.groups_per_row * sizeof(float)));
  float* sz = s + R * d.groups_per_row;
  for (size_t n0 = n_begin; n0 < n_end; n0 += R) {
    const size_t count = std::min(R, n_end - n0);
    PrepRowScales(w, n0, count, s, sz);
    RowTile<R> rows;
    for (size_t r = 0; r < R; ++r) {
      const size_t k = std::min(r, count - 1);  // short tiles repeat their last row
      rows.idx[r] = n0 + k;
      rows.data[r] = w.data + (n0 + k) * d.row_bytes;
      rows.scale[r] = s + k * d.groups_per_row;
      rows.scale_zero[r] = sz + k * d.groups_per_row;
    }
    for (size_t i0 = 0; i0 < m; i0 += mt_max) tile(rows, i0, std::min(mt_max, m - i0));
  }
}

// Calls fn.template operator()<MT>() for the runtime mt in [1, MaxMT].
template <size_t MaxMT, class Fn>
void DispatchMT(size_t mt, Fn fn) {
  if constexpr (MaxMT > 1) {
    if (mt < MaxMT) return DispatchMT<MaxMT - 1>(mt, fn);
  }
  fn.template operator()<MaxMT>();
}

// ---------------------------------------------------------------------------
// int8 weights
// ---------------------------------------------------------------------------

struct Int8Prep {
  const float* sxe;    // m > 1: [m][chunks][16]: act scales of the chunk's two blocks
  const float* corr;   // m > 1: [m][groups]: 128 · s_x · Σ q_x per block
  const float* sxq;    // m == 1: [quads][16], act scales in Int8Row's lane order
  const int32_t* xcq;  // m == 1: [quads][16], 128 · Σ q_x in Int8Row's lane order
  size_t chunks, groups, quads;
};

// Runs step(q, tail, acc) for q < total, the full steps (q < full)
// alternating between two accumulators so their FMA chains overlap, and
// returns the accumulators' sum. Decode rows of Int8Row and Q4Row.
template <class Step>
__attribute__((always_inline)) inline __m512 TwoChains(size_t full, size_t total, Step step) {
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  size_t q = 0;
  for (; q + 2 <= full; q += 2) {
    step(q, false, acc0);
    step(q + 1, false, acc1);
  }
  for (; q < full; ++q) step(q, false, acc0);
  if (q < total) step(q, true, acc1);
  return _mm512_add_ps(acc0, acc1);
}

// Int8Row's fold: four dot product vectors (one per 64-input chunk, 16
// int32 lanes each) -> one vector whose lane 4L + j is the sum of the four
// lanes of quarter L of vector j. Quarters 0-1 of a chunk belong to its
// first 32-input block, quarters 2-3 to its second.
__attribute__((always_inline)) inline __m512i Fold4(__m512i d0, __m512i d1, __m512i d2,
                                                    __m512i d3) {
  const __m512i t0 = _mm512_add_epi32(_mm512_unpacklo_epi32(d0, d1), _mm512_unpackhi_epi32(d0, d1));
  const __m512i t1 = _mm512_add_epi32(_mm512_unpacklo_epi32(d2, d3), _mm512_unpackhi_epi32(d2, d3));
  return _mm512_add_epi32(_mm512_unpacklo_epi64(t0, t1), _mm512_unpackhi_epi64(t0, t1));
}

// u8(w ^ 0x80) · q_x of the 64-input chunk c of a weight row and the acts
// (zero if the chunk does not exist; only its first 32 weight bytes if it
// is the row's last, half chunk). Callers pass literal flags on the hot
// path, so the checks fold away there (as in Q4ChunkDots).
__attribute__((always_inline)) inline __m512i Int8ChunkDot(const uint8_t* w, const int8_t* xq,
                                                           size_t c, bool exists, bool half) {
  if (!exists) return _mm512_setzero_si512();
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  const __m512i b =
      half ? _mm512_maskz_loadu_epi8(0xFFFFFFFFull, w + c * 64) : _mm512_loadu_si512(w + c * 64);
  return _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_xor_si512(b, flip),
                             _mm512_loadu_si512(xq + c * 64));
}

Int8Prep PrepInt8(const QTensor& w, const Q8Acts& x) {
  Int8Prep p;
  p.groups = w.desc.groups_per_row;
  p.chunks = (p.groups + 1) / 2;
  p.quads = (p.chunks + 3) / 4;
  p.sxe = p.corr = p.sxq = nullptr;
  p.xcq = nullptr;
  if (x.m == 1) {
    // Lane 4L + j of quad q: chunk 4q + j, block 2(4q + j) + L / 2. The
    // flip excess 128 · Σ q_x is computed by the same dot and fold as the
    // weights' (with all-zero weights), so Int8Row subtracts it exactly.
    float* sxq = static_cast<float*>(Scratch<4>(p.quads * 16 * sizeof(float)));
    int32_t* xcq = static_cast<int32_t*>(Scratch<5>(p.quads * 16 * sizeof(int32_t)));
    alignas(64) const uint8_t zeros[64] = {};
    for (size_t q = 0; q < p.quads; ++q) {
      for (size_t l = 0; l < 16; ++l) {
        const size_t g = 2 * (4 * q + l % 4) + l / 8;
        sxq[16 * q + l] = g < p.groups ? x.scales[g] : 0.0f;
      }
      // Chunk 0 of a zero "row" against the acts shifted to chunk 4q + j.
      auto excess = [&](size_t j) {
        const size_t c = 4 * q + j;
        if (c >= p.chunks) return _mm512_setzero_si512();
        return Int8ChunkDot(zeros, x.q + c * 64, 0, true, 2 * c + 1 == p.groups);
      };
      _mm512_storeu_si512(xcq + 16 * q, Fold4(excess(0), excess(1), excess(2), excess(3)));
    }
    p.sxq = sxq;
    p.xcq = xcq;
    return p;
  }
  const size_t xblocks = x.k_padded / kQ8ActBlock;
  float* sxe = static_cast<float*>(Scratch<0>(x.m * p.chunks * 16 * sizeof(float)));
  float* corr = static_cast<float*>(Scratch<1>(x.m * p.groups * sizeof(float)));
  for (size_t i = 0; i < x.m; ++i) {
    const float* sx = x.scales + i * xblocks;
    for (size_t c = 0; c < p.chunks; ++c) {
      float* dst = sxe + (i * p.chunks + c) * 16;
      const float b = 2 * c + 1 < p.groups ? sx[2 * c + 1] : 0.0f;
      std::fill(dst, dst + 8, sx[2 * c]);
      std::fill(dst + 8, dst + 16, b);
    }
    for (size_t g = 0; g < p.groups; ++g) {
      corr[i * p.groups + g] = 128.0f * sx[g] * static_cast<float>(x.sums[i * xblocks + g]);
    }
  }
  p.sxe = sxe;
  p.corr = corr;
  return p;
}

// One 64-input chunk c (groups 2c, 2c + 1) of an int8 tile. Half: only
// group 2c exists (masked loads, never past the row or its scales).
template <size_t R, size_t MT, bool Half>
__attribute__((always_inline)) inline void Int8Step(const Q8Acts& x, const Int8Prep& p,
                                                    const uint8_t* const* data,
                                                    const float* const* scale, size_t c, size_t i0,
                                                    __m512 (&acc)[MT][R]) {
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  __m512i wv[R];
  __m512 sw[R];
  for (size_t r = 0; r < R; ++r) {
    const uint8_t* src = data[r] + c * 64;
    const float* s = scale[r] + 2 * c;
    if constexpr (Half) {
      wv[r] = _mm512_maskz_loadu_epi8(0xFFFFFFFFull, src);
      sw[r] = Expand2(_mm_load_ss(s), 0, 1);
    } else {
      if constexpr (kPrefetchInt8 != 0) __builtin_prefetch(src + kPrefetchInt8);
      wv[r] = _mm512_loadu_si512(src);
      sw[r] = Expand2(Load2(s), 0, 1);
    }
    wv[r] = _mm512_xor_si512(wv[r], flip);
  }
  for (size_t i = 0; i < MT; ++i) {
    const __m512i xq = _mm512_loadu_si512(x.q + (i0 + i) * x.k_padded + c * 64);
    const __m512 sx = _mm512_load_ps(p.sxe + ((i0 + i) * p.chunks + c) * 16);
    for (size_t r = 0; r < R; ++r) {
      const __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wv[r], xq);
      acc[i][r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(sw[r], sx), acc[i][r]);
    }
  }
}

template <size_t R, size_t MT>
void Int8Tile(const QTensor& w, const Q8Acts& x, const Int8Prep& p, const RowTile<R>& rows,
              size_t nr, size_t i0, float* y) {
  const uint8_t* data[R];
  const float* scale[R];
  for (size_t r = 0; r < R; ++r) {
    data[r] = rows.data[r];
    scale[r] = rows.scale[r];
  }
  // Small tiles alternate two accumulator sets between chunks (see Q4Tile).
  constexpr size_t A = R * MT < 4 ? 2 : 1;
  __m512 acc[A][MT][R];
  for (size_t a = 0; a < A; ++a) {
    for (size_t i = 0; i < MT; ++i) {
      for (size_t r = 0; r < R; ++r) acc[a][i][r] = _mm512_setzero_ps();
    }
  }
  const size_t full = p.groups / 2;
  size_t c = 0;
  for (; c + A <= full; c += A) {
    for (size_t a = 0; a < A; ++a) Int8Step<R, MT, false>(x, p, data, scale, c + a, i0, acc[a]);
  }
  for (; c < full; ++c) Int8Step<R, MT, false>(x, p, data, scale, c, i0, acc[0]);
  if (p.groups % 2 != 0) Int8Step<R, MT, true>(x, p, data, scale, full, i0, acc[0]);
  for (size_t i = 0; i < MT; ++i) {
    for (size_t r = 0; r < R; ++r) {
      if (r >= nr) break;  // constant bound keeps acc in registers
      __m512 sum = acc[0][i][r];
      for (size_t a = 1; a < A; ++a) sum = _mm512_add_ps(sum, acc[a][i][r]);
      const __m512 corr = DotGroups(rows.scale[r], p.corr + (i0 + i) * p.groups, p.groups);
      y[(i0 + i) * w.desc.rows + rows.idx[r]] = Hsum(_mm512_sub_ps(sum, corr));
    }
  }
}

// Decode (m == 1) for one weight row, four chunks (8 blocks) per step. As in
// Q4Row the int32 dot products are folded first (Fold4: 2 lanes per block),
// the flip excess is subtracted from the folded vector in int32, exactly,
// and only then converted: one cvt, one multiply by the act scales and one
// FMA by the weight scales per 256 inputs instead of a cvt, a scale expand,
// a multiply and an FMA per 64, and no per-row scale conversion or
// correction pass.
float Int8Row(const Int8Prep& p, const uint8_t* row, const uint16_t* scale, const int8_t* xq) {
  // Lane 4L + j uses block 2j + L / 2 of the quad's 8.
  const __m512i sw_idx = _mm512_set_epi32(7, 5, 3, 1, 7, 5, 3, 1, 6, 4, 2, 0, 6, 4, 2, 0);
  auto quad = [&](size_t q, bool tail, __m512& acc) __attribute__((always_inline)) {
    auto dot = [&](size_t c) __attribute__((always_inline)) {
      return Int8ChunkDot(row, xq, c, !tail || c < p.chunks, tail && 2 * c + 1 == p.groups);
    };
    __m512i u = Fold4(dot(4 * q), dot(4 * q + 1), dot(4 * q + 2), dot(4 * q + 3));
    const __m128i h =
        tail ? _mm_maskz_loadu_epi16(static_cast<__mmask8>((1u << (p.groups - 8 * q)) - 1u),
                                     scale + 8 * q)
             : _mm_loadu_si128(reinterpret_cast<const __m128i*>(scale + 8 * q));
    u = _mm512_sub_epi32(u, _mm512_loadu_si512(p.xcq + 16 * q));
    const __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(u), _mm512_loadu_ps(p.sxq + 16 * q));
    const __m512 sw = _mm512_permutexvar_ps(sw_idx, _mm512_castps256_ps512(_mm256_cvtph_ps(h)));
    acc = _mm512_fmadd_ps(f, sw, acc);
  };
  return Hsum(TwoChains(p.groups / 8, p.quads, quad));
}

void MatmulQ8Int8Vnni(const QTensor& w, const Q8Acts& x, float* y, size_t n_begin, size_t n_end) {
  CheckMatmulQ8Args(w, Format::kInt8, x, n_begin, n_end);
  if (x.m == 0 || n_begin == n_end) return;
  const Int8Prep p = PrepInt8(w, x);
  if (x.m == 1) {
    const TensorDesc& d = w.desc;
    for (size_t n = n_begin; n < n_end; ++n) {
      y[n] = Int8Row(p, w.data + n * d.row_bytes, w.scales + n * d.groups_per_row, x.q);
    }
    return;
  }
  ForTiles<kRowsTiled>(
      w, x.m, kTileM, n_begin, n_end, [&](const RowTile<kRowsTiled>& rows, size_t i0, size_t mt) {
        const size_t nr = std::min(kRowsTiled, n_end - rows.idx[0]);
        DispatchMT<kTileM>(
            mt, [&]<size_t MT>() { Int8Tile<kRowsTiled, MT>(w, x, p, rows, nr, i0, y); });
      });
}

// ---------------------------------------------------------------------------
// q4 weights
// ---------------------------------------------------------------------------

struct Q4Prep {
  const int8_t* xq;  // [m][chunks][128]: act codes in nibble order (see top)
  // m > 1: act scales per chunk. Blocks of 32: [m][chunks][2][16], for the low /
  // high (÷16) nibbles. Blocks of 64 (`wide`): [m][chunks][16], lanes 0-7
  // the chunk's first block and 8-15 its second, both ÷16 (see Q4StepWide).
  const float* sxe;
  const float* zt;   // [m][groups]: Σ_{blocks of g} s_x · Σ q_x
  const float* sxp;  // m == 1 only: [pairs][16], scales in Q4Row's lane order
  size_t chunks, groups, pairs;
  bool wide;  // m > 1 with blocks of 64
};

Q4Prep PrepQ4(const QTensor& w, const Q8Acts& x) {
  Q4Prep p;
  const size_t xblocks = x.k_padded / x.block;
  const size_t nblocks = w.desc.padded_cols / kQ4BlockSize;  // 64-input blocks
  const size_t bpg = w.desc.group_size / x.block;
  const unsigned shift = Q8ActHalfShift(x);  // half h (of 2 · nblocks): block h >> shift
  p.chunks = (nblocks + 1) / 2;
  p.groups = w.desc.groups_per_row;
  p.wide = shift != 0 && x.m > 1;
  const size_t sxe_per_chunk = p.wide ? 16 : 32;  // m == 1: sxe is not used
  int8_t* xq = static_cast<int8_t*>(Scratch<0>(x.m * p.chunks * 128));
  float* sxe = static_cast<float*>(Scratch<1>(x.m * p.chunks * sxe_per_chunk * sizeof(float)));
  float* zt = static_cast<float*>(Scratch<2>(x.m * p.groups * sizeof(float)));
  for (size_t i = 0; i < x.m; ++i) {
    const int8_t* src = x.q + i * x.k_padded;
    const float* sx = x.scales + i * xblocks;
    const int32_t* sums = x.sums + i * xblocks;
    for (size_t c = 0; c < p.chunks; ++c) {
      // Halves 0, 1 (q4 block 2c) always exist; halves 2, 3 iff block 2c + 1 does.
      const bool has2 = 2 * c + 1 < nblocks;
      const int8_t* from = src + c * 128;
      const __m512i a = _mm512_loadu_si512(from);
      const __m512i b = has2 ? _mm512_loadu_si512(from + 64) : _mm512_setzero_si512();
      // [h0 h1 | h2 h3] -> [h0 h2] for the low nibbles, [h1 h3] for the high.
      int8_t* dst = xq + (i * p.chunks + c) * 128;
      _mm512_store_si512(dst, _mm512_shuffle_i64x2(a, b, _MM_SHUFFLE(1, 0, 1, 0)));
      _mm512_store_si512(dst + 64, _mm512_shuffle_i64x2(a, b, _MM_SHUFFLE(3, 2, 3, 2)));
      if (x.m == 1) continue;  // decode reads its scales from sxp
      float* s = sxe + (i * p.chunks + c) * sxe_per_chunk;
      const __m512 sixteenth = _mm512_set1_ps(0.0625f);
      if (p.wide) {  // act blocks 2c, 2c + 1; both nibbles ÷16 (Q4StepWide)
        const __m128 v = has2 ? Load2(sx + 2 * c) : _mm_load_ss(sx + 2 * c);
        _mm512_store_ps(s, _mm512_mul_ps(Expand2(v, 0, 1), sixteenth));
      } else {  // act blocks 4c..4c + 3 = halves 0..3; high nibbles (16·q) ÷16
        const __m128 v = has2 ? _mm_loadu_ps(sx + 4 * c) : Load2(sx + 4 * c);
        _mm512_store_ps(s, Expand2(v, 0, 2));
        _mm512_store_ps(s + 16, _mm512_mul_ps(Expand2(v, 1, 3), sixteenth));
      }
    }
    for (size_t g = 0; g < p.groups; ++g) {
      float t = 0.0f;
      for (size_t bb = 0; bb < bpg; ++bb) {
        const size_t b = g * bpg + bb;
        if (b * x.block < w.desc.padded_cols) t += sx[b] * static_cast<float>(sums[b]);
      }
      zt[i * p.groups + g] = t;
    }
  }
  p.xq = xq;
  p.sxe = sxe;
  p.zt = zt;
  // Decode: act scales for Q4Row, per pair of chunks (c, c + 1): lane
  // 4k + j holds half k of {A, C, B, D} = {4c, 4c+2, 4c+1, 4c+3} of chunk
  // c (j < 2) or c + 1 (j >= 2); high-nibble halves B, D carry the 1/16.
  p.pairs = (p.chunks + 1) / 2;
  p.sxp = nullptr;
  if (x.m == 1) {
    float* sxp = static_cast<float*>(Scratch<4>(p.pairs * 16 * sizeof(float)));
    constexpr size_t kHalfOf[4] = {0, 2, 1, 3};
    for (size_t q = 0; q < p.pairs; ++q) {
      for (size_t k = 0; k < 4; ++k) {
        for (size_t j = 0; j < 4; ++j) {
          const size_t h = 4 * (2 * q + j / 2) + kHalfOf[k];
          const float factor = (k >= 2) ? 0.0625f : 1.0f;
          sxp[16 * q + 4 * k + j] = h < 2 * nblocks ? x.scales[h >> shift] * factor : 0.0f;
        }
      }
    }
    p.sxp = sxp;
  }
  return p;
}

// One 128-input chunk c of a q4 tile. Per weight row: lo = b & 0x0F,
// hi = b & 0xF0, one vpdpbusd each. For groups of 64 and 128 the weight
// scale is the same in the lanes of both products, so it is applied once:
// acc += s_w · (cvt(dl)·s_xl + cvt(dh)·s_xh); groups of 32 differ between
// the low and high halves. Half: only q4 block 2c exists (masked loads,
// never past the row or its scales).
template <int GS, size_t R, size_t MT, bool Half>
__attribute__((always_inline)) inline void Q4Step(const Q4Prep& p, const uint8_t* const* data,
                                                  const float* const* scale, size_t c, size_t i0,
                                                  __m512 (&acc)[MT][R]) {
  const __m512i lo_mask = _mm512_set1_epi8(0x0F);
  const __m512i hi_mask = _mm512_set1_epi8(static_cast<char>(0xF0));
  __m512i lo[R], hi[R];
  __m512 slo[R], shi[R];
  for (size_t r = 0; r < R; ++r) {
    const uint8_t* src = data[r] + c * 64;
    __m512i b;
    if constexpr (Half) {
      b = _mm512_maskz_loadu_epi8(0xFFFFFFFFull, src);
    } else {
      b = _mm512_loadu_si512(src);  // prefill re-reads its tile from L1/L2: no prefetch
    }
    lo[r] = _mm512_and_si512(b, lo_mask);
    hi[r] = _mm512_and_si512(b, hi_mask);
    const float* s = scale[r];
    if constexpr (GS == 128) {
      slo[r] = shi[r] = _mm512_set1_ps(s[c]);
    } else if constexpr (GS == 64) {
      const __m128 v = Half ? _mm_load_ss(s + 2 * c) : Load2(s + 2 * c);
      slo[r] = shi[r] = Expand2(v, 0, 1);
    } else {
      const __m128 v = Half ? Load2(s + 4 * c) : _mm_loadu_ps(s + 4 * c);
      slo[r] = Expand2(v, 0, 2);
      shi[r] = Expand2(v, 1, 3);
    }
  }
  for (size_t i = 0; i < MT; ++i) {
    const int8_t* xq = p.xq + ((i0 + i) * p.chunks + c) * 128;
    const float* sx = p.sxe + ((i0 + i) * p.chunks + c) * 32;
    const __m512i xl = _mm512_load_si512(xq), xh = _mm512_load_si512(xq + 64);
    const __m512 sxl = _mm512_load_ps(sx), sxh = _mm512_load_ps(sx + 16);
    for (size_t r = 0; r < R; ++r) {
      const __m512 dl = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_setzero_si512(), lo[r], xl));
      const __m512 dh = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_setzero_si512(), hi[r], xh));
      if constexpr (GS == 32) {
        acc[i][r] = _mm512_fmadd_ps(dl, _mm512_mul_ps(slo[r], sxl), acc[i][r]);
        acc[i][r] = _mm512_fmadd_ps(dh, _mm512_mul_ps(shi[r], sxh), acc[i][r]);
      } else {
        const __m512 t = _mm512_fmadd_ps(dh, sxh, _mm512_mul_ps(dl, sxl));
        acc[i][r] = _mm512_fmadd_ps(t, slo[r], acc[i][r]);
      }
    }
  }
}

// Q4Step for activation blocks of 64 (groups of 64 or 128): in every lane
// the low and the high nibbles' products share both the act scale and the
// weight scale, so they are summed in int32 before one conversion. The low
// nibbles are shifted up to 16·q like the high ones (b << 4 & 0xF0), so one
// accumulator holds 16 · Σ q·q_x (|lane| ≤ 8 · 240 · 127 < 2^31) and the ÷16
// sits in the act scales: per weight row and act row 2 vpdpbusd, 1 cvt, 1
// multiply and 1 FMA per 128 inputs (Q4Step: 2, 2 and 3). On Emerald
// Rapids all of these issue at the same rate, so the tile's time is its op
// count (docs/benchmarks.md, Matmul → Session 13).
template <int GS, size_t R, size_t MT, bool Half>
__attribute__((always_inline)) inline void Q4StepWide(const Q4Prep& p, const uint8_t* const* data,
                                                      const float* const* scale, size_t c,
                                                      size_t i0, __m512 (&acc)[MT][R]) {
  static_assert(GS == 64 || GS == 128);
  const __m512i hi_mask = _mm512_set1_epi8(static_cast<char>(0xF0));
  __m512i lo[R], hi[R];
  __m512 sw[R];
  for (size_t r = 0; r < R; ++r) {
    const uint8_t* src = data[r] + c * 64;
    const __m512i b = Half ? _mm512_maskz_loadu_epi8(0xFFFFFFFFull, src) : _mm512_loadu_si512(src);
    lo[r] = _mm512_and_si512(_mm512_slli_epi16(b, 4), hi_mask);
    hi[r] = _mm512_and_si512(b, hi_mask);
    const float* s = scale[r];
    if constexpr (GS == 128) {
      sw[r] = _mm512_set1_ps(s[c]);
    } else {
      sw[r] = Expand2(Half ? _mm_load_ss(s + 2 * c) : Load2(s + 2 * c), 0, 1);
    }
  }
  for (size_t i = 0; i < MT; ++i) {
    const int8_t* xq = p.xq + ((i0 + i) * p.chunks + c) * 128;
    const __m512i xl = _mm512_load_si512(xq), xh = _mm512_load_si512(xq + 64);
    const __m512 sx = _mm512_load_ps(p.sxe + ((i0 + i) * p.chunks + c) * 16);
    for (size_t r = 0; r < R; ++r) {
      const __m512i d =
          _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), lo[r], xl), hi[r], xh);
      acc[i][r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), _mm512_mul_ps(sw[r], sx), acc[i][r]);
    }
  }
}

template <int GS, size_t R, size_t MT, bool Wide>
void Q4Tile(const QTensor& w, const Q4Prep& p, const RowTile<R>& rows, size_t nr, size_t i0,
            float* y) {
  const uint8_t* data[R];
  const float* scale[R];
  for (size_t r = 0; r < R; ++r) {
    data[r] = rows.data[r];
    scale[r] = rows.scale[r];
  }
  // Small tiles alternate two accumulator sets between chunks, so the FMA
  // chains are long enough to hide their latency.
  constexpr size_t A = R * MT < 4 ? 2 : 1;
  __m512 acc[A][MT][R];
  for (size_t a = 0; a < A; ++a) {
    for (size_t i = 0; i < MT; ++i) {
      for (size_t r = 0; r < R; ++r) acc[a][i][r] = _mm512_setzero_ps();
    }
  }
  const size_t nblocks = w.desc.padded_cols / kQ4BlockSize, full = nblocks / 2;
  size_t c = 0;
  auto step = [&]<bool Half>(size_t chunk, __m512(&a)[MT][R]) __attribute__((always_inline)) {
    if constexpr (Wide) {
      Q4StepWide<GS, R, MT, Half>(p, data, scale, chunk, i0, a);
    } else {
      Q4Step<GS, R, MT, Half>(p, data, scale, chunk, i0, a);
    }
  };
  for (; c + A <= full; c += A) {
    for (size_t a = 0; a < A; ++a) step.template operator()<false>(c + a, acc[a]);
  }
  for (; c < full; ++c) step.template operator()<false>(c, acc[0]);
  if (nblocks % 2 != 0) step.template operator()<true>(full, acc[0]);
  for (size_t i = 0; i < MT; ++i) {
    for (size_t r = 0; r < R; ++r) {
      if (r >= nr) break;  // constant bound keeps acc in registers
      __m512 sum = acc[0][i][r];
      for (size_t a = 1; a < A; ++a) sum = _mm512_add_ps(sum, acc[a][i][r]);
      const __m512 corr = DotGroups(rows.scale_zero[r], p.zt + (i0 + i) * p.groups, p.groups);
      y[(i0 + i) * w.desc.rows + rows.idx[r]] = Hsum(_mm512_sub_ps(sum, corr));
    }
  }
}

// Decode (m == 1) for one weight row, two chunks per step. Converting and
// scaling each dot product vector separately keeps the FMA/multiply pipes
// busiest (2 vpdpbusd + 2 cvt + 3 FP ops per chunk); instead the int32
// partial sums are first folded with cheap shuffles and adds, so that one
// vector holds all 8 blocks of the two chunks (2 lanes each), and that
// vector gets one cvt, one multiply by the act scales and one FMA by the
// weight scales: per chunk ~2 vpdpbusd + 1.5 FP ops.
template <int GS, int Locality>
__attribute__((always_inline)) inline __m512i Q4ChunkDots(const uint8_t* row, const int8_t* xq,
                                                          size_t c, bool exists, bool half) {
  if (!exists) return _mm512_setzero_si512();
  if constexpr (kPrefetchQ4 != 0) __builtin_prefetch(row + c * 64 + kPrefetchQ4, 0, Locality);
  const __m512i b = half ? _mm512_maskz_loadu_epi8(0xFFFFFFFFull, row + c * 64)
                         : _mm512_loadu_si512(row + c * 64);
  const __m512i lo = _mm512_and_si512(b, _mm512_set1_epi8(0x0F));
  const __m512i hi = _mm512_and_si512(b, _mm512_set1_epi8(static_cast<char>(0xF0)));
  const __m512i dl =
      _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, _mm512_load_si512(xq + c * 128));
  const __m512i dh =
      _mm512_dpbusd_epi32(_mm512_setzero_si512(), hi, _mm512_load_si512(xq + c * 128 + 64));
  // dl = [A0 A1 | C0 C1], dh = [B0 B1 | D0 D1] (128-bit quarters) ->
  // [A C B D], each the 4-lane partial sums of its block.
  return _mm512_add_epi32(_mm512_shuffle_i32x4(dl, dh, _MM_SHUFFLE(2, 0, 2, 0)),
                          _mm512_shuffle_i32x4(dl, dh, _MM_SHUFFLE(3, 1, 3, 1)));
}

template <int GS, int Locality>
float Q4Row(const Q4Prep& p, const uint8_t* row, const uint16_t* scale, const uint8_t* zeros,
            size_t nblocks) {
  // Weight scales in the lane order of a folded pair (see PrepQ4): lane
  // 4k + j uses the group of block k of chunk c (j < 2) or c + 1 (j >= 2).
  // They are read as f16 straight from the tensor: converting a row's
  // scales up front costs more than these few conversions.
  __m512i sw_idx;
  size_t per_pair;  // groups per pair of chunks
  if constexpr (GS == 128) {
    sw_idx = _mm512_set_epi32(1, 1, 0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 1, 1, 0, 0);
    per_pair = 2;
  } else if constexpr (GS == 64) {
    sw_idx = _mm512_set_epi32(3, 3, 1, 1, 2, 2, 0, 0, 3, 3, 1, 1, 2, 2, 0, 0);
    per_pair = 4;
  } else {
    sw_idx = _mm512_set_epi32(7, 7, 3, 3, 5, 5, 1, 1, 6, 6, 2, 2, 4, 4, 0, 0);
    per_pair = 8;
  }
  const size_t groups = p.groups;
  auto pair = [&](size_t q, bool tail, __m512& acc) __attribute__((always_inline)) {
    const size_t c = 2 * q;
    const bool half0 = tail && 2 * c + 1 == nblocks;
    const bool has1 = !tail || 2 * (c + 1) < nblocks;
    const bool half1 = tail && 2 * (c + 1) + 1 == nblocks;
    const __m512i u0 = Q4ChunkDots<GS, Locality>(row, p.xq, c, true, half0);
    const __m512i u1 = Q4ChunkDots<GS, Locality>(row, p.xq, c + 1, has1, half1);
    // [A C B D] of c and c + 1 -> per quarter: c, c, c + 1, c + 1.
    const __m512i t =
        _mm512_add_epi32(_mm512_unpacklo_epi64(u0, u1), _mm512_unpackhi_epi64(u0, u1));
    const __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(t), _mm512_load_ps(p.sxp + 16 * q));
    const size_t g0 = q * per_pair;
    __m128i h;
    if (tail) {
      h = _mm_maskz_loadu_epi16(
          static_cast<__mmask8>((1u << (groups - g0 < per_pair ? groups - g0 : per_pair)) - 1u),
          scale + g0);
    } else if constexpr (GS == 32) {
      h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(scale + g0));
    } else {
      h = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(scale + g0));
    }
    const __m512 sw = _mm512_permutexvar_ps(sw_idx, _mm512_castps256_ps512(_mm256_cvtph_ps(h)));
    acc = _mm512_fmadd_ps(f, sw, acc);
  };
  const __m512 sum = TwoChains(nblocks / 4, p.pairs, pair);
  // Zero points: Σ_g s_g · z_g · Σ_{blocks of g} s_x · Σ q_x.
  __m512 corr = _mm512_setzero_ps();
  for (size_t g = 0; g < groups; g += 16) {
    const __mmask16 m = FirstLanes(groups - g);
    const __m512 sv = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, scale + g));
    const __m512 z = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, zeros + g)));
    corr = _mm512_fmadd_ps(_mm512_mul_ps(sv, z), _mm512_maskz_loadu_ps(m, p.zt + g), corr);
  }
  return Hsum(_mm512_sub_ps(sum, corr));
}

template <int GS, int Locality>
void MatmulQ8Q4VnniGs(const QTensor& w, const Q8Acts& x, float* y, size_t n_begin, size_t n_end) {
  const Q4Prep p = PrepQ4(w, x);
  if (x.m == 1) {
    const TensorDesc& d = w.desc;
    const size_t nblocks = d.padded_cols / kQ4BlockSize;
    for (size_t n = n_begin; n < n_end; ++n) {
      const uint16_t* scale = w.scales + n * d.groups_per_row;
      const uint8_t* zeros = w.zeros + n * d.groups_per_row;
      __builtin_prefetch(reinterpret_cast<const uint8_t*>(scale) + kPrefetchQ4Side, 0, 3);
      __builtin_prefetch(zeros + kPrefetchQ4Side / 2, 0, 3);
      y[n] = Q4Row<GS, Locality>(p, w.data + n * d.row_bytes, scale, zeros, nblocks);
    }
    return;
  }
  ForTiles<kRowsTiled>(
      w, x.m, kTileM, n_begin, n_end, [&](const RowTile<kRowsTiled>& rows, size_t i0, size_t mt) {
        const size_t nr = std::min(kRowsTiled, n_end - rows.idx[0]);
        DispatchMT<kTileM>(mt, [&]<size_t MT>() {
          if constexpr (GS != 32) {  // blocks of 64 never meet groups of 32 (CheckMatmulQ8Args)
            if (p.wide) return Q4Tile<GS, kRowsTiled, MT, true>(w, p, rows, nr, i0, y);
          }
          Q4Tile<GS, kRowsTiled, MT, false>(w, p, rows, nr, i0, y);
        });
      });
}

// Locality: the decode's weight prefetch hint (2: prefetcht1, 0: nta).
template <int Locality>
void MatmulQ8Q4Vnni(const QTensor& w, const Q8Acts& x, float* y, size_t n_begin, size_t n_end) {
  CheckMatmulQ8Args(w, Format::kQ4, x, n_begin, n_end);
  if (x.m == 0 || n_begin == n_end) return;
  switch (w.desc.group_size) {
    case 32:
      return MatmulQ8Q4VnniGs<32, Locality>(w, x, y, n_begin, n_end);
    case 64:
      return MatmulQ8Q4VnniGs<64, Locality>(w, x, y, n_begin, n_end);
    default:
      return MatmulQ8Q4VnniGs<128, Locality>(w, x, y, n_begin, n_end);
  }
}

}  // namespace

void FillAvx512VnniTable(KernelTable& t) {
  t.matmul_q8[static_cast<int>(Format::kInt8)] = MatmulQ8Int8Vnni;
  t.matmul_q8[static_cast<int>(Format::kQ4)] = MatmulQ8Q4Vnni<2>;
}

// Zen 5: the q4 decode prefetches its weights non-temporally. Gemma-2-2B
// q4, tg32/tg64 at 2 threads, paired, seven alternated rounds (session 19,
// docs/benchmarks.md): 28.6-33.5 t/s against 28.1-30.7 with prefetcht1,
// ahead in six of the seven.
void FillAvx512VnniNtaTable(KernelTable& t) {
  t.matmul_q8[static_cast<int>(Format::kQ4)] = MatmulQ8Q4Vnni<0>;
}

}  // namespace qlm::kernels
