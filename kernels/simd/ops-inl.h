// SIMD element-wise, normalisation, RoPE and attention kernels, written once
// with xsimd and instantiated per ISA by kernels/isa_*.cc.
//
// ODR hazard: this header is compiled into several translation units with
// different ISA flags. Every function here is therefore a template on Arch
// (so each ISA gets its own symbols), and no standard-library template that
// would be emitted out of line (std::vector, ...) is used: a copy compiled with
// AVX-512 flags could otherwise be picked by the linker for generic code.
#pragma once

#include <xsimd/xsimd.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "kernels/registry.h"

namespace qlm::kernels::simd {
namespace ops_detail {

template <class Arch>
using Batch = xsimd::batch<float, Arch>;

// A growable per-thread scratch buffer (malloc-based, see the ODR note above).
template <class Arch, int kTag>
struct Scratch {
  float* p = nullptr;
  size_t cap = 0;
  ~Scratch() { std::free(p); }
  float* Get(size_t n) {
    if (n > cap) {
      std::free(p);
      p = static_cast<float*>(std::malloc(n * sizeof(float)));
      if (p == nullptr) std::abort();  // out of memory on a few KiB..MiB
      cap = n;
    }
    return p;
  }
};

template <class Arch, int kTag>
float* ThreadScratch(size_t n) {
  thread_local Scratch<Arch, kTag> s;
  return s.Get(n);
}

// Applies a batch → batch function to x[0, n) (into out, may alias). The
// tail goes through the same batch code on a zero-padded copy, so every
// element sees exactly the same arithmetic.
template <class Arch, class F>
inline void Map1(const float* x, float* out, size_t n, F f) {
  using B = Batch<Arch>;
  constexpr size_t W = B::size;
  size_t i = 0;
  for (; i + W <= n; i += W) f(B::load_unaligned(x + i)).store_unaligned(out + i);
  if (i < n) {
    alignas(64) float buf[W] = {};
    for (size_t j = 0; j < n - i; ++j) buf[j] = x[i + j];
    f(B::load_unaligned(buf)).store_unaligned(buf);
    for (size_t j = 0; j < n - i; ++j) out[i + j] = buf[j];
  }
}

template <class Arch, class F>
inline void Map2(const float* a, const float* b, float* out, size_t n, F f) {
  using B = Batch<Arch>;
  constexpr size_t W = B::size;
  size_t i = 0;
  for (; i + W <= n; i += W) {
    f(B::load_unaligned(a + i), B::load_unaligned(b + i)).store_unaligned(out + i);
  }
  if (i < n) {
    alignas(64) float ba[W] = {}, bb[W] = {};
    for (size_t j = 0; j < n - i; ++j) {
      ba[j] = a[i + j];
      bb[j] = b[i + j];
    }
    f(B::load_unaligned(ba), B::load_unaligned(bb)).store_unaligned(ba);
    for (size_t j = 0; j < n - i; ++j) out[i + j] = ba[j];
  }
}

template <class Arch>
inline float ReduceMax(const Batch<Arch>& v) {
  alignas(64) float buf[Batch<Arch>::size];
  v.store_aligned(buf);
  float m = buf[0];
  for (size_t j = 1; j < Batch<Arch>::size; ++j) m = buf[j] > m ? buf[j] : m;
  return m;
}

template <class Arch>
inline float MaxOf(const float* x, size_t n) {
  using B = Batch<Arch>;
  constexpr size_t W = B::size;
  float m = -std::numeric_limits<float>::infinity();
  size_t i = 0;
  if (n >= W) {
    B vm = B::load_unaligned(x);
    for (i = W; i + W <= n; i += W) vm = xsimd::max(vm, B::load_unaligned(x + i));
    m = ReduceMax<Arch>(vm);
  }
  for (; i < n; ++i) m = x[i] > m ? x[i] : m;
  return m;
}

// x[i] = exp(x[i] - max) (0 where x[i] is -inf); returns the sum.
template <class Arch>
inline float ExpShiftSum(float* x, size_t n, float max_v) {
  using B = Batch<Arch>;
  constexpr size_t W = B::size;
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  const B vmax(max_v), neg_inf(kNegInf);
  B vsum(0.0f);
  auto exp_shift = [&](B v) { return xsimd::select(v == neg_inf, B(0.0f), xsimd::exp(v - vmax)); };
  size_t i = 0;
  for (; i + W <= n; i += W) {
    const B e = exp_shift(B::load_unaligned(x + i));
    e.store_unaligned(x + i);
    vsum += e;
  }
  if (i < n) {
    // Tail padded with -inf, which contributes exactly 0 to the sum.
    alignas(64) float buf[W];
    for (size_t j = 0; j < W; ++j) buf[j] = i + j < n ? x[i + j] : kNegInf;
    const B e = exp_shift(B::load_aligned(buf));
    e.store_aligned(buf);
    vsum += e;
    for (size_t j = 0; j < n - i; ++j) x[i + j] = buf[j];
  }
  return xsimd::hadd(vsum);
}

// ---- Element-wise ops. ----

template <class Arch>
void Add(const float* a, const float* b, float* out, size_t n) {
  Map2<Arch>(a, b, out, n, [](Batch<Arch> x, Batch<Arch> y) { return x + y; });
}

template <class Arch>
void Scale(float* x, float s, size_t n) {
  const Batch<Arch> vs(s);
  Map1<Arch>(x, x, n, [&](Batch<Arch> v) { return v * vs; });
}

template <class Arch>
void Softcap(float* x, float cap, size_t n) {
  using B = Batch<Arch>;
  const B vcap(cap), inv(1.0f / cap);
  Map1<Arch>(x, x, n, [&](B v) { return vcap * xsimd::tanh(v * inv); });
}

// GELU-tanh: 0.5·x·(1 + tanh(u)) = x · sigmoid(2u), u = √(2/π)·(x + 0.044715·x³).
// The sigmoid form needs one exp and avoids the cancellation of 1 + tanh(u)
// for negative x.
template <class Arch>
void Geglu(const float* gate, const float* up, float* out, size_t n) {
  using B = Batch<Arch>;
  const B k2(-2.0f * 0.7978845608028654f), c(0.044715f), one(1.0f);
  Map2<Arch>(gate, up, out, n, [&](B g, B u) {
    const B inner = xsimd::fma(c * g, g * g, g);  // x + 0.044715·x³
    return g * u / (one + xsimd::exp(k2 * inner));
  });
}

template <class Arch>
void Swiglu(const float* gate, const float* up, float* out, size_t n) {
  using B = Batch<Arch>;
  const B one(1.0f);
  Map2<Arch>(gate, up, out, n, [&](B g, B u) { return g * u / (one + xsimd::exp(-g)); });
}

template <class Arch>
void Softmax(float* x, size_t n) {
  if (n == 0) return;
  const float max_v = MaxOf<Arch>(x, n);
  const float sum = ExpShiftSum<Arch>(x, n, max_v);
  Scale<Arch>(x, 1.0f / sum, n);
}

template <class Arch>
size_t Argmax(const float* x, size_t n) {
  using B = Batch<Arch>;
  constexpr size_t W = B::size;
  if (n == 0) return 0;
  const float m = MaxOf<Arch>(x, n);
  // First index holding the maximum.
  const B vm(m);
  size_t i = 0;
  for (; i + W <= n; i += W) {
    if (xsimd::any(B::load_unaligned(x + i) == vm)) break;
  }
  for (; i < n; ++i) {
    if (x[i] == m) return i;
  }
  return 0;  // only NaNs: no maximum
}

// ---- RMSNorm. ----

template <class Arch>
void RmsNorm(const float* x, const float* w, float* y, size_t n_rows, size_t dim, float eps,
             bool add_one) {
  using B = Batch<Arch>;
  constexpr size_t W = B::size;
  const B one(add_one ? 1.0f : 0.0f);
  for (size_t r = 0; r < n_rows; ++r) {
    const float* xr = x + r * dim;
    float* yr = y + r * dim;
    B s0(0.0f), s1(0.0f);
    size_t i = 0;
    for (; i + 2 * W <= dim; i += 2 * W) {
      const B a = B::load_unaligned(xr + i), b = B::load_unaligned(xr + i + W);
      s0 = xsimd::fma(a, a, s0);
      s1 = xsimd::fma(b, b, s1);
    }
    for (; i + W <= dim; i += W) {
      const B a = B::load_unaligned(xr + i);
      s0 = xsimd::fma(a, a, s0);
    }
    float ss = xsimd::hadd(s0 + s1);
    for (; i < dim; ++i) ss += xr[i] * xr[i];
    const B inv(1.0f / std::sqrt(ss / static_cast<float>(dim) + eps));
    Map2<Arch>(xr, w, yr, dim, [&](B xv, B wv) { return xv * inv * (wv + one); });
  }
}

// ---- RoPE (rotate-half). ----

template <class Arch>
void Rope(float* x, size_t n_tokens, size_t n_heads, size_t head_dim, size_t token_stride,
          const float* cos, const float* sin) {
  using B = Batch<Arch>;
  constexpr size_t W = B::size;
  const size_t half = head_dim / 2;
  for (size_t t = 0; t < n_tokens; ++t) {
    const float* c = cos + t * half;
    const float* s = sin + t * half;
    for (size_t h = 0; h < n_heads; ++h) {
      float* x1 = x + t * token_stride + h * head_dim;
      float* x2 = x1 + half;
      size_t d = 0;
      for (; d + W <= half; d += W) {
        const B a = B::load_unaligned(x1 + d), b = B::load_unaligned(x2 + d);
        const B cv = B::load_unaligned(c + d), sv = B::load_unaligned(s + d);
        xsimd::fms(a, cv, b * sv).store_unaligned(x1 + d);
        xsimd::fma(b, cv, a * sv).store_unaligned(x2 + d);
      }
      for (; d < half; ++d) {
        const float a = x1[d], b = x2[d];
        x1[d] = a * c[d] - b * s[d];
        x2[d] = b * c[d] + a * s[d];
      }
    }
  }
}

// ---- Attention. ----
//
// Rows are (query, head) pairs that share one kv head; they are processed in
// tiles of up to kAttnTile rows so each K and V row is loaded once per tile and
// reused for every row of it (grouped-query heads and, in prefill, several
// queries). Two passes per tile over the cache:
//   1. scores[r][s] = scale·q_r·k_s (−inf where masked), soft-cap, then
//      p = exp(score − max) / Σ in place (numerically stable);
//   2. out_r = Σ_s p[r][s] · v_s, streaming V.
// Scratch: kAttnTile·n_slots scores + kAttnTile·head_dim scaled queries per
// thread.
inline constexpr size_t kAttnTile = 8;

// dots[r] = q_r · k for R rows of q (row stride hd). Up to 4 rows use two
// accumulator chains each (FMA latency), more rows have enough chains already.
template <class Arch, size_t R>
inline void DotRows(const float* q, const float* k, size_t hd, float* dots) {
  using B = Batch<Arch>;
  constexpr size_t W = B::size;
  constexpr size_t kChains = R <= 4 ? 2 : 1;
  B acc[kChains][R];
  for (size_t c = 0; c < kChains; ++c) {
    for (size_t r = 0; r < R; ++r) acc[c][r] = B(0.0f);
  }
  size_t d = 0;
  for (; d + kChains * W <= hd; d += kChains * W) {
    for (size_t c = 0; c < kChains; ++c) {
      const B kv = B::load_unaligned(k + d + c * W);
      for (size_t r = 0; r < R; ++r) {
        acc[c][r] = xsimd::fma(B::load_unaligned(q + r * hd + d + c * W), kv, acc[c][r]);
      }
    }
  }
  if (kChains == 2 && d + W <= hd) {
    const B kv = B::load_unaligned(k + d);
    for (size_t r = 0; r < R; ++r) {
      acc[0][r] = xsimd::fma(B::load_unaligned(q + r * hd + d), kv, acc[0][r]);
    }
    d += W;
  }
  for (size_t r = 0; r < R; ++r) {
    B total = acc[0][r];
    for (size_t c = 1; c < kChains; ++c) total += acc[c][r];
    float sum = xsimd::hadd(total);
    for (size_t j = d; j < hd; ++j) sum += q[r * hd + j] * k[j];
    dots[r] = sum;
  }
}

// One kv head's K or V rows as the kernel sees them: f32 rows, or codes of
// the KvType plus one scale per row (int8, sfp8).
struct KvRows {
  const float* f32 = nullptr;
  const uint8_t* codes = nullptr;
  const float* scale = nullptr;
};

template <KvType T>
inline KvRows KvHeadRows(const AttentionArgs& a, bool key, size_t kv_head) {
  const size_t row0 = kv_head * a.capacity;
  KvRows r;
  if constexpr (T == KvType::kF32) {
    r.f32 = (key ? a.k : a.v) + row0 * a.head_dim;
  } else {
    r.codes = (key ? a.k_codes : a.v_codes) + row0 * a.head_dim * KvElemBytes(T);
    if constexpr (KvHasScale(T)) r.scale = (key ? a.k_scale : a.v_scale) + row0;
  }
  return r;
}

// Decodes the n codes of one quantized K/V row, WITHOUT its row scale (the
// caller folds the scale into the dot product or the probability), into
// dst. Plain branch-free loops: each ISA's translation unit vectorizes them
// with its own flags, and the row stays in L1 for the dot products.
template <class Arch, KvType T>
inline void DecodeKvCodes(const uint8_t* src, size_t n, float* dst) {
  if constexpr (T == KvType::kBF16) {
    for (size_t d = 0; d < n; ++d) {
      uint16_t b;
      std::memcpy(&b, src + 2 * d, 2);
      const uint32_t bits = static_cast<uint32_t>(b) << 16;
      std::memcpy(dst + d, &bits, 4);
    }
  } else if constexpr (T == KvType::kInt8) {
    for (size_t d = 0; d < n; ++d) dst[d] = static_cast<float>(static_cast<int8_t>(src[d]));
  } else if constexpr (T == KvType::kSFP8) {
    // bf16 bits of the magnitude (see Sfp8ToBF16 in matmul-inl.h and
    // docs/formats.md): "large" codes e3m3, "small" e4m2; bit 7 is the sign.
    for (size_t d = 0; d < n; ++d) {
      const uint32_t c = src[d], c7 = c & 0x7fu;
      const uint32_t mag = c7 >= 64 ? (c7 << 4) + 0x3800u : (c7 << 5) + 0x3400u;
      const uint32_t bits = c7 == 0 ? 0u : (mag | ((c & 0x80u) << 8)) << 16;
      std::memcpy(dst + d, &bits, 4);
    }
  }
}

template <class Arch, size_t R, KvType T>
void ScoreTile(const AttentionArgs& a, const KvRows& k, const float* q, const int64_t* q_pos,
               float* scores) {
  const size_t ns = a.n_slots, hd = a.head_dim;
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  int64_t min_pos = q_pos[0], max_pos = q_pos[0];
  for (size_t r = 1; r < R; ++r) {
    min_pos = q_pos[r] < min_pos ? q_pos[r] : min_pos;
    max_pos = q_pos[r] > max_pos ? q_pos[r] : max_pos;
  }
  // Quantized caches: one decoded K row at a time.
  float* row = T == KvType::kF32 ? nullptr : ThreadScratch<Arch, 2>(hd);
  for (size_t s = 0; s < ns; ++s) {
    const int64_t pos = a.slot_pos[s];
    // Masked for every row of the tile: skip the dot products.
    if (pos < 0 || pos > max_pos || (a.window > 0 && min_pos - pos >= a.window)) {
      for (size_t r = 0; r < R; ++r) scores[r * ns + s] = kNegInf;
      continue;
    }
    float dots[R];
    if constexpr (T == KvType::kF32) {
      DotRows<Arch, R>(q, k.f32 + s * hd, hd, dots);
    } else {
      DecodeKvCodes<Arch, T>(k.codes + s * hd * KvElemBytes(T), hd, row);
      DotRows<Arch, R>(q, row, hd, dots);
      if constexpr (KvHasScale(T)) {
        for (size_t r = 0; r < R; ++r) dots[r] *= k.scale[s];
      }
    }
    for (size_t r = 0; r < R; ++r) {
      const bool ok = pos <= q_pos[r] && (a.window <= 0 || q_pos[r] - pos < a.window);
      scores[r * ns + s] = ok ? dots[r] : kNegInf;
    }
  }
}

// scores → probabilities in place; returns false if the row attends to nothing.
template <class Arch>
bool ScoresToProbs(float* sc, size_t ns, float softcap) {
  using B = Batch<Arch>;
  if (softcap > 0.0f) {
    const B vcap(softcap), inv(1.0f / softcap);
    const B neg_inf(-std::numeric_limits<float>::infinity());
    Map1<Arch>(sc, sc, ns,
               [&](B v) { return xsimd::select(v == neg_inf, v, vcap * xsimd::tanh(v * inv)); });
  }
  const float max_v = MaxOf<Arch>(sc, ns);
  if (!(max_v > -std::numeric_limits<float>::infinity())) return false;
  const float sum = ExpShiftSum<Arch>(sc, ns, max_v);
  Scale<Arch>(sc, 1.0f / sum, ns);
  return true;
}

template <class Arch, size_t R, KvType T>
void AccumulateTile(const AttentionArgs& a, const KvRows& v, const float* probs,
                    float* const* out) {
  using B = Batch<Arch>;
  constexpr size_t W = B::size;
  const size_t ns = a.n_slots, hd = a.head_dim;
  float* row = T == KvType::kF32 ? nullptr : ThreadScratch<Arch, 2>(hd);
  for (size_t s = 0; s < ns; ++s) {
    float p[R];
    bool any = false;
    for (size_t r = 0; r < R; ++r) {
      p[r] = probs[r * ns + s];
      any |= p[r] != 0.0f;
    }
    if (!any) continue;
    const float* vs;
    if constexpr (T == KvType::kF32) {
      vs = v.f32 + s * hd;
    } else {
      DecodeKvCodes<Arch, T>(v.codes + s * hd * KvElemBytes(T), hd, row);
      vs = row;
      if constexpr (KvHasScale(T)) {
        for (size_t r = 0; r < R; ++r) p[r] *= v.scale[s];
      }
    }
    size_t d = 0;
    for (; d + W <= hd; d += W) {
      const B vv = B::load_unaligned(vs + d);
      for (size_t r = 0; r < R; ++r) {
        xsimd::fma(B(p[r]), vv, B::load_unaligned(out[r] + d)).store_unaligned(out[r] + d);
      }
    }
    for (; d < hd; ++d) {
      for (size_t r = 0; r < R; ++r) out[r][d] += p[r] * vs[d];
    }
  }
}

template <class Arch, size_t R, KvType T>
void AttentionTile(const AttentionArgs& a, size_t kv_head, const size_t* row_q,
                   const size_t* row_h) {
  const size_t ns = a.n_slots, hd = a.head_dim;
  float* q = ThreadScratch<Arch, 0>(R * hd);
  float* scores = ThreadScratch<Arch, 1>(R * ns);
  int64_t q_pos[R];
  float* out[R];
  for (size_t r = 0; r < R; ++r) {
    const float* src = a.q + (row_q[r] * a.n_heads + row_h[r]) * hd;
    for (size_t d = 0; d < hd; ++d) q[r * hd + d] = src[d] * a.scale;
    q_pos[r] = static_cast<int64_t>(a.q_pos0) + static_cast<int64_t>(row_q[r]);
    out[r] = a.out + (row_q[r] * a.n_heads + row_h[r]) * hd;
    for (size_t d = 0; d < hd; ++d) out[r][d] = 0.0f;
  }
  const KvRows k = KvHeadRows<T>(a, /*key=*/true, kv_head);
  const KvRows v = KvHeadRows<T>(a, /*key=*/false, kv_head);
  ScoreTile<Arch, R, T>(a, k, q, q_pos, scores);
  bool any = false;
  for (size_t r = 0; r < R; ++r) {
    // A row with nothing to attend to keeps all-zero probabilities (and output).
    if (ScoresToProbs<Arch>(scores + r * ns, ns, a.softcap)) {
      any = true;
    } else {
      for (size_t s = 0; s < ns; ++s) scores[r * ns + s] = 0.0f;
    }
  }
  if (any) AccumulateTile<Arch, R, T>(a, v, scores, out);
}

template <class Arch, KvType T>
void AttentionOf(const AttentionArgs& a) {
  if (a.head_begin >= a.head_end || a.n_q == 0) return;
  const size_t group = a.n_heads / a.n_kv_heads;
  const size_t kv_first = a.head_begin / group, kv_last = (a.head_end - 1) / group;
  for (size_t kvh = kv_first; kvh <= kv_last; ++kvh) {
    const size_t h0 = kvh * group > a.head_begin ? kvh * group : a.head_begin;
    const size_t h1 = (kvh + 1) * group < a.head_end ? (kvh + 1) * group : a.head_end;
    const size_t heads = h1 - h0, n_rows = a.n_q * heads;
    for (size_t r0 = 0; r0 < n_rows; r0 += kAttnTile) {
      const size_t n = n_rows - r0 < kAttnTile ? n_rows - r0 : kAttnTile;
      size_t row_q[kAttnTile], row_h[kAttnTile];
      for (size_t r = 0; r < n; ++r) {
        row_q[r] = (r0 + r) / heads;
        row_h[r] = h0 + (r0 + r) % heads;
      }
      switch (n) {
        case 1:
          AttentionTile<Arch, 1, T>(a, kvh, row_q, row_h);
          break;
        case 2:
          AttentionTile<Arch, 2, T>(a, kvh, row_q, row_h);
          break;
        case 3:
          AttentionTile<Arch, 3, T>(a, kvh, row_q, row_h);
          break;
        case 4:
          AttentionTile<Arch, 4, T>(a, kvh, row_q, row_h);
          break;
        case 5:
          AttentionTile<Arch, 5, T>(a, kvh, row_q, row_h);
          break;
        case 6:
          AttentionTile<Arch, 6, T>(a, kvh, row_q, row_h);
          break;
        case 7:
          AttentionTile<Arch, 7, T>(a, kvh, row_q, row_h);
          break;
        default:
          AttentionTile<Arch, 8, T>(a, kvh, row_q, row_h);
          break;
      }
    }
  }
}

template <class Arch>
void Attention(const AttentionArgs& a) {
  switch (a.kv_type) {
    case KvType::kF32:
      return AttentionOf<Arch, KvType::kF32>(a);
    case KvType::kBF16:
      return AttentionOf<Arch, KvType::kBF16>(a);
    case KvType::kInt8:
      return AttentionOf<Arch, KvType::kInt8>(a);
    case KvType::kSFP8:
      return AttentionOf<Arch, KvType::kSFP8>(a);
  }
}

// Four vector accumulators, four full-width loads per step: enough
// independent loads in flight that DRAM, not the core, is the limit (one
// vector stream read ~45 % faster than 8-byte scalar loads on the Zen 4 VM
// with 2 MiB pages, docs/benchmarks.md).
template <class Arch>
uint64_t ReadSum(const void* p, size_t bytes) {
  using B = xsimd::batch<uint64_t, Arch>;
  constexpr size_t L = B::size;
  const uint64_t* w = static_cast<const uint64_t*>(p);
  const size_t words = bytes / sizeof(uint64_t);
  B a0(uint64_t{0}), a1(uint64_t{0}), a2(uint64_t{0}), a3(uint64_t{0});
  size_t i = 0;
  for (; i + 4 * L <= words; i += 4 * L) {
    a0 += B::load_unaligned(w + i);
    a1 += B::load_unaligned(w + i + L);
    a2 += B::load_unaligned(w + i + 2 * L);
    a3 += B::load_unaligned(w + i + 3 * L);
  }
  uint64_t s = xsimd::hadd((a0 + a1) + (a2 + a3));
  for (; i < words; ++i) s += w[i];
  return s;
}

}  // namespace ops_detail

template <class Arch>
void FillOps(KernelTable& t) {
  t.attention = ops_detail::Attention<Arch>;
  t.rmsnorm = ops_detail::RmsNorm<Arch>;
  t.rope = ops_detail::Rope<Arch>;
  t.geglu = ops_detail::Geglu<Arch>;
  t.swiglu = ops_detail::Swiglu<Arch>;
  t.softmax = ops_detail::Softmax<Arch>;
  t.add = ops_detail::Add<Arch>;
  t.scale = ops_detail::Scale<Arch>;
  t.softcap = ops_detail::Softcap<Arch>;
  t.argmax = ops_detail::Argmax<Arch>;
  t.read_sum = ops_detail::ReadSum<Arch>;
}

}  // namespace qlm::kernels::simd
