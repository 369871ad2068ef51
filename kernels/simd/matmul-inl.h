// SIMD matmul kernels, written once and instantiated per ISA by the
// kernels/isa_*.cc translation units (each compiled with its ISA's flags).
//
// f32 activations (MatmulFn), every weight format:
//  * m == 1 (decode, memory-bound): GemvRows reads each weight row front to
//    back, decoding each chunk straight into registers and multiplying it
//    with the matching chunk of x; f32 and bf16 take two rows at a time from
//    the two halves of the range (two sequential streams, one x load each).
//    Exception: int8 weights on x86 decode through 16-bit activation codes
//    (matmul_i16-inl.h), which halves the vector work per weight byte.
//  * m >= 2 (prefill, compute-bound): MatmulTiled decodes a panel of 4 rows
//    (a K block of them) into f32 scratch ONCE, then a register-blocked
//    micro-kernel applies it to tiles of up to 6 rows of x (2 on AVX2). M
//    and K are blocked so the x block stays in L2 and the panel in L1.
// x is first copied into per-thread scratch in stored order (w.perm applied)
// and zero-padded to whole chunks, so no kernel ever reads x out of bounds;
// weight rows of f32/bf16/sfp8 are not padded in storage and their last
// partial chunk goes through a bounded tail decode.
//
// Format decoding uses raw intrinsics where xsimd has no widening loads
// (AVX-512, AVX2+F16C, NEON), with a portable scalar fallback; the
// arithmetic (FMA, reductions) is xsimd. Formats whose cheapest decode
// yields lanes out of order (SFP8 on AVX-512) declare it (XPos) and x is
// gathered in the same order. The int8-activation kernels for AVX2
// (maddubs) and the portable ones live in matmul_q8-inl.h; VNNI ones in
// isa_avx512_vnni.cc.
//
// Everything here is a template on Arch (or in an unnamed namespace), so the
// per-ISA translation units never share a symbol compiled with other flags.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <xsimd/xsimd.hpp>

#include "base/aligned_buffer.h"
#include "kernels/registry.h"
#include "kernels/scalar/matmul.h"
#include "quant/format.h"
#include "quant/half.h"
#include "quant/sfp8.h"

#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif
#if defined(__aarch64__)
#include <arm_neon.h>
#endif

#if defined(__AVX512F__) && defined(__AVX2__) && defined(__FMA__)
namespace qlm::kernels::simd::mm {
struct avx512_ymm;
}
namespace xsimd::types {
XSIMD_DECLARE_SIMD_REGISTER_ALIAS(qlm::kernels::simd::mm::avx512_ymm, fma3<avx2>);
}
#endif
namespace qlm::kernels::simd::mm {
// Complete (and usable) only in the translation units compiled with
// -mavx512vbmi (isa_avx512_vbmi.cc, and isa_avx512_bf16.cc for
// avx512_vbmi_bf16); elsewhere nothing names them but kVbmi.
struct avx512_vbmi;
struct avx512_vbmi_bf16;
}  // namespace qlm::kernels::simd::mm
#if defined(__AVX512VBMI__) && defined(__AVX512BW__)
namespace xsimd::types {
XSIMD_DECLARE_SIMD_REGISTER_ALIAS(qlm::kernels::simd::mm::avx512_vbmi, avx512bw);
XSIMD_DECLARE_SIMD_REGISTER_ALIAS(qlm::kernels::simd::mm::avx512_vbmi_bf16, avx512bw);
}  // namespace xsimd::types
#endif

namespace qlm::kernels::simd {
namespace mm {

template <class Arch>
using VF = xsimd::batch<float, Arch>;

template <class Arch>
inline constexpr bool kAvx512 = std::is_base_of_v<xsimd::avx512f, Arch>;
template <class Arch>
inline constexpr bool kAvx2 = std::is_base_of_v<xsimd::avx2, Arch>;
template <class Arch>
inline constexpr bool kNeon64 = std::is_base_of_v<xsimd::neon64, Arch>;
template <class Arch>
inline constexpr bool kVbmi = std::is_base_of_v<avx512_vbmi, Arch>;

#if defined(__AVX512F__) && defined(__AVX2__) && defined(__FMA__)
// 256-bit vectors inside the avx512 table (its translation unit only, so no
// other table shares these instantiations). Zen 4 executes 512-bit
// operations as two 256-bit halves, and the 512-bit decode of f32, bf16 and
// int8 weights streamed from DRAM 10-40 % slower than the same kernels on
// 256-bit vectors (measured on the Zen 4 VM these were tuned on), so decode
// of those formats runs on this arch; the decoders pick their AVX2 paths.
// Intel CPUs and (since session 16) Zen 4 decode f32 on 512 bits instead
// (FillMatmulFullWidthF32).
struct avx512_ymm : xsimd::fma3<xsimd::avx2> {
  static constexpr char const* name() noexcept { return "avx512_ymm"; }
};
#endif
#if defined(__AVX512VBMI__) && defined(__AVX512BW__)
// The avx512 arch plus VBMI byte permutes (vpermi2b): only the SFP8 decoder
// differs (isa_avx512_vbmi.cc patches that one entry in when the CPU has it).
struct avx512_vbmi : xsimd::avx512bw {
  static constexpr char const* name() noexcept { return "avx512_vbmi"; }
};
// The same kernels instantiated in isa_avx512_bf16.cc, compiled with
// -mavx512bf16 as well: a type of their own, so the linker can never merge
// them with isa_avx512_vbmi.cc's, which run on VBMI CPUs without BF16.
struct avx512_vbmi_bf16 : avx512_vbmi {
  static constexpr char const* name() noexcept { return "avx512_vbmi_bf16"; }
};
#endif

// Per-thread scratch that only grows; Slot separates buffers used at once.
template <class Arch, int Slot>
inline void* Scratch(size_t bytes) {
  thread_local AlignedBuffer buf;
  if (buf.size() < bytes) buf.Resize(bytes);
  return buf.data();
}

template <class Arch>
inline float HalfToFloat(uint16_t h) {
#if defined(__F16C__)
  return _cvtsh_ss(h);
#else
  return F16ToF32(h);
#endif
}

// out[i] = f16 in[i] for i < n.
template <class Arch>
inline void HalfsToFloats(const uint16_t* in, size_t n, float* out) {
  size_t i = 0;
#if defined(__F16C__)
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(out + i,
                     _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i))));
  }
#endif
  for (; i < n; ++i) out[i] = HalfToFloat<Arch>(in[i]);
}

// Rows of x in stored input order (gathered through perm), each padded with
// zeros to ldx floats, and rounded to bf16 values if RoundBF16. Returns
// per-thread scratch.
template <class Arch, bool RoundBF16 = false>
const float* StoredX(const float* x, size_t m, size_t k, const int32_t* perm, size_t ldx) {
  float* xs = static_cast<float*>(Scratch<Arch, 0>(m * ldx * sizeof(float)));
  for (size_t i = 0; i < m; ++i) {
    const float* src = x + i * k;
    float* dst = xs + i * ldx;
    if (perm != nullptr) {
      for (size_t j = 0; j < k; ++j) dst[j] = src[static_cast<size_t>(perm[j])];
    } else {
      std::memcpy(dst, src, k * sizeof(float));
    }
    if constexpr (RoundBF16) {
      for (size_t j = 0; j < k; ++j) dst[j] = RoundToBF16(dst[j]);
    }
    std::fill(dst + k, dst + ldx, 0.0f);
  }
  return xs;
}

// The same for decoder D (rounded if D::kBF16Acts), then each chunk
// reordered to D's lane order.
template <class Arch, class D>
const float* StoredXFor(const float* x, size_t m, size_t k, const int32_t* perm, size_t ldx) {
  const float* xs = StoredX<Arch, D::kBF16Acts>(x, m, k, perm, ldx);
  if constexpr (D::kPermuted) {
    float* out = static_cast<float*>(Scratch<Arch, 4>(m * ldx * sizeof(float)));
    for (size_t i = 0; i < m * ldx; i += D::kChunk) {
      for (size_t j = 0; j < D::kChunk; ++j) out[i + j] = xs[i + D::XPos(j)];
    }
    return out;
  }
  return xs;
}

// ---------------------------------------------------------------------------
// Weight row decoders. Each turns chunk c (stored inputs [c·kChunk,
// (c+1)·kChunk)) of row n into kVecs f32 vectors of weight / RowScale(n).
// Full() reads a whole chunk; Tail() the first `count` inputs of the last,
// partial chunk (zero elsewhere), only for formats whose rows are not padded
// to whole chunks in storage. At(n, c) is the scalar decode used by the
// portable fallback and the tail.
// ---------------------------------------------------------------------------

template <class Arch, class Self>
struct DecoderBase {
  static constexpr size_t N = VF<Arch>::size;
  // Portable path: scalar decode into an aligned buffer, then vector loads.
  // Lane j of a decoded chunk (vector j / N, lane j % N) holds the chunk's
  // input XPos(j). The identity unless a decoder's cheapest instruction
  // sequence yields another order; x is gathered into the same order.
  static constexpr bool kPermuted = false;
  static constexpr size_t XPos(size_t j) { return j; }
  // True when the format's matmul multiplies bf16(x) (SFP8: see MatmulFn).
  static constexpr bool kBF16Acts = false;
  static void Scalar(const Self& d, size_t n, size_t first, size_t count, VF<Arch>* out) {
    alignas(64) float t[Self::kChunk] = {};
    for (size_t j = 0; j < Self::kChunk; ++j) {
      const size_t pos = Self::XPos(j);
      if (pos < count) t[j] = d.At(n, first + pos);
    }
    for (size_t v = 0; v < Self::kVecs; ++v) out[v] = VF<Arch>::load_aligned(t + v * N);
  }
  void Tail(size_t n, size_t c, size_t count, VF<Arch>* out) const {
    Scalar(static_cast<const Self&>(*this), n, c * Self::kChunk, count, out);
  }
  float RowScale(size_t) const { return 1.0f; }
  static constexpr bool kHasRowScale = false;
  // True when every chunk is one group with one scale: Raw() then gives the
  // unscaled codes and the kernel applies the scale once per chunk.
  static constexpr bool kChunkScaled = false;
};

template <class Arch, Format F>
struct Decoder;

template <class Arch>
struct Decoder<Arch, Format::kF32> : DecoderBase<Arch, Decoder<Arch, Format::kF32>> {
  static constexpr size_t N = VF<Arch>::size, kVecs = 2, kChunk = kVecs * N;
  static constexpr size_t kChunkBytes = kChunk * 4;
  static constexpr bool kPadded = false;
  const QTensor& w;
  explicit Decoder(const QTensor& t) : w(t) {}
  const uint8_t* Row(size_t n) const { return w.data + n * w.desc.row_bytes; }
  float At(size_t n, size_t c) const {
    float v;
    std::memcpy(&v, Row(n) + 4 * c, 4);
    return v;
  }
  void Full(size_t n, size_t c, VF<Arch>* out) const {
    const float* p = reinterpret_cast<const float*>(Row(n)) + c * kChunk;
    for (size_t v = 0; v < kVecs; ++v) out[v] = VF<Arch>::load_unaligned(p + v * N);
  }
};

template <class Arch>
struct Decoder<Arch, Format::kBF16> : DecoderBase<Arch, Decoder<Arch, Format::kBF16>> {
  static constexpr size_t N = VF<Arch>::size, kVecs = 2, kChunk = kVecs * N;
  static constexpr size_t kChunkBytes = kChunk * 2;
  static constexpr bool kPadded = false;
  const QTensor& w;
  explicit Decoder(const QTensor& t) : w(t) {}
  const uint8_t* Row(size_t n) const { return w.data + n * w.desc.row_bytes; }
  float At(size_t n, size_t c) const {
    uint16_t b;
    std::memcpy(&b, Row(n) + 2 * c, 2);
    return BF16ToF32(b);
  }
  void Full(size_t n, size_t c, VF<Arch>* out) const {
    const uint8_t* p = Row(n) + c * kChunkBytes;
#if defined(__AVX512F__)
    if constexpr (kAvx512<Arch>) {
      for (size_t v = 0; v < kVecs; ++v) {
        const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32 * v));
        out[v] = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
      }
      return;
    }
#endif
#if defined(__AVX2__)
    if constexpr (kAvx2<Arch>) {
      for (size_t v = 0; v < kVecs; ++v) {
        const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16 * v));
        out[v] = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
      }
      return;
    }
#endif
#if defined(__aarch64__)
    if constexpr (kNeon64<Arch>) {
      for (size_t v = 0; v < kVecs; ++v) {
        uint16_t h[4];
        std::memcpy(h, p + 8 * v, 8);
        out[v] = vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(h), 16));
      }
      return;
    }
#endif
    this->Scalar(*this, n, c * kChunk, kChunk, out);
  }
};

// SFP8 magnitudes are exact in bf16 and, scaled by 2^9, in f16 (|v|·2^9
// lies in [1.25·2^-14, 960], all normal): magnitude code c7 (low 7 bits) is
//   c7 = 0          -> 0
//   c7 in [1, 64)   -> bf16 (c7 << 5) + 0x3400, f16·2^9 (c7 << 8) + 0x0400
//   c7 in [64, 128) -> bf16 (c7 << 4) + 0x3800, f16·2^9 (c7 << 7) + 0x2400
// ("small": e4 m2, "large": e3 m3) and the code's bit 7 is the sign bit 15.
// AVX-512 looks bf16 up in a 128-entry table (two 64-entry vpermt2w and a
// blend) and widens by interleaving with zeros, which yields lanes in a
// permuted order (XPos); with VBMI, two byte permutes (vpermi2b, 128-entry
// tables of the high and low bf16 bytes; the index's bit 7, the sign, is
// ignored by the instruction) decode 64 codes at once, ~40 % fewer vector
// operations per weight. AVX2 and NEON compute f16 and convert in hardware.
// The 2^-9 (f16 route) and the tensor scale are applied once per output.
template <class Arch>
inline constexpr uint16_t Sfp8ToBF16(uint32_t c7) {
  if (c7 == 0) return 0;
  return static_cast<uint16_t>(c7 >= 64 ? (c7 << 4) + 0x3800u : (c7 << 5) + 0x3400u);
}

#if defined(__AVX512VBMI__) && defined(__AVX512BW__)
// 64 SFP8 codes -> their 64 bf16 values by two byte permutes (the VBMI
// decode above): w0 holds codes 16L + 0-7 of each 128-bit lane L as words,
// w1 codes 16L + 8-15. Arch only keeps each translation unit's copy apart.
template <class Arch>
__attribute__((always_inline)) inline void Sfp8Bf16WordsVbmi(__m512i codes, __m512i& w0,
                                                             __m512i& w1) {
  struct Tables {
    uint8_t hi[128], lo[128];
  };
  alignas(64) static constexpr Tables kT = [] {
    Tables t{};
    for (uint32_t c = 0; c < 128; ++c) {
      t.hi[c] = static_cast<uint8_t>(Sfp8ToBF16<Arch>(c) >> 8);
      t.lo[c] = static_cast<uint8_t>(Sfp8ToBF16<Arch>(c) & 0xFF);
    }
    return t;
  }();
  __m512i hi =
      _mm512_permutex2var_epi8(_mm512_load_si512(kT.hi), codes, _mm512_load_si512(kT.hi + 64));
  const __m512i lo =
      _mm512_permutex2var_epi8(_mm512_load_si512(kT.lo), codes, _mm512_load_si512(kT.lo + 64));
  // hi |= code & 0x80: the sign.
  hi = _mm512_ternarylogic_epi32(hi, codes, _mm512_set1_epi8(static_cast<char>(0x80)), 0xF8);
  w0 = _mm512_unpacklo_epi8(lo, hi);
  w1 = _mm512_unpackhi_epi8(lo, hi);
}
#endif

template <class Arch>
struct Decoder<Arch, Format::kSFP8> : DecoderBase<Arch, Decoder<Arch, Format::kSFP8>> {
  static constexpr size_t N = VF<Arch>::size, kVecs = kVbmi<Arch> ? 4 : 2, kChunk = kVecs * N;
  static constexpr size_t kChunkBytes = kChunk;
  static constexpr bool kPadded = false;
  static constexpr bool kHasRowScale = true;
  static constexpr bool kBF16Acts = true;
  // Long rows prefetch 16 KiB ahead, not the default 8: at 2304×9216, M=1
  // (session 7, two A/B rounds) 0.39 / 0.37 of the probe at 8 KiB, 0.60 /
  // 0.57 at 16, 0.59 / 0.57 at 24, 0.57 / 0.57 at 32. The same 16 KiB for
  // every format was slower for f32 (0.68 vs 0.71) and int8 (0.83 vs 0.85).
  static constexpr size_t kPrefetchAhead = 16384;
  // The bf16 route needs no pre-scale; the f16 route decodes v · 2^9.
  static constexpr bool kBF16Route = kAvx512<Arch>;
  static constexpr float kPreScale = kBF16Route ? 1.0f : 512.0f;
  // bf16 route: unpacklo/hi_epi16 with zero take words 0-3 / 4-7 of each
  // 128-bit lane, so lane 4L + j of vector v is code 8L + 4v + j.
  static constexpr bool kPermuted = kBF16Route;
  // VBMI: bytes -> words by unpack{lo,hi}_epi8 (codes 16L + 0-7 / 8-15 of
  // 128-bit lane L), then words -> f32 by unpack{lo,hi}_epi16, so lane 4L + j
  // of vector v is code 16L + 4v + j.
  static constexpr size_t XPos(size_t j) {
    if constexpr (!kBF16Route) return j;
    const size_t v = j / 16, l = j % 16;
    if constexpr (kVbmi<Arch>) return 16 * (l / 4) + 4 * v + l % 4;
    return 8 * (l / 4) + 4 * v + l % 4;
  }
  const QTensor& w;
  float row_scale;
  explicit Decoder(const QTensor& t) : w(t), row_scale(t.desc.tensor_scale / kPreScale) {}
  const uint8_t* Row(size_t n) const { return w.data + n * w.desc.row_bytes; }
  float RowScale(size_t) const { return row_scale; }
  float At(size_t n, size_t c) const { return Sfp8Decode(Row(n)[c]) * kPreScale; }
  void Full(size_t n, size_t c, VF<Arch>* out) const {
    const uint8_t* p = Row(n) + c * kChunkBytes;
#if defined(__AVX512VBMI__) && defined(__AVX512BW__)
    if constexpr (kVbmi<Arch>) {
      __m512i w0, w1;
      Sfp8Bf16WordsVbmi<Arch>(_mm512_loadu_si512(p), w0, w1);
      const __m512i z = _mm512_setzero_si512();
      out[0] = _mm512_castsi512_ps(_mm512_unpacklo_epi16(z, w0));
      out[1] = _mm512_castsi512_ps(_mm512_unpackhi_epi16(z, w0));
      out[2] = _mm512_castsi512_ps(_mm512_unpacklo_epi16(z, w1));
      out[3] = _mm512_castsi512_ps(_mm512_unpackhi_epi16(z, w1));
      return;
    }
#endif
#if defined(__AVX512BW__)
    if constexpr (kAvx512<Arch>) {
      // 128-entry bf16 table in four registers; two 64-entry permutes and a
      // blend on bit 6 look up 32 magnitudes at once.
      alignas(64) static constexpr auto kTable = [] {
        struct T {
          uint16_t v[128];
        } t{};
        for (uint32_t c = 0; c < 128; ++c) t.v[c] = Sfp8ToBF16<Arch>(c);
        return t;
      }();
      const __m512i t0 = _mm512_load_si512(kTable.v), t1 = _mm512_load_si512(kTable.v + 32);
      const __m512i t2 = _mm512_load_si512(kTable.v + 64), t3 = _mm512_load_si512(kTable.v + 96);
      const __m512i codes =
          _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
      const __m512i lo = _mm512_permutex2var_epi16(t0, codes, t1);
      const __m512i hi = _mm512_permutex2var_epi16(t2, codes, t3);
      const __mmask32 large = _mm512_test_epi16_mask(codes, _mm512_set1_epi16(0x40));
      __m512i h = _mm512_mask_blend_epi16(large, lo, hi);
      // h |= (code << 8) & 0x8000: the sign.
      h = _mm512_ternarylogic_epi32(h, _mm512_slli_epi16(codes, 8), _mm512_set1_epi16(-32768),
                                    0xF8);
      out[0] = _mm512_castsi512_ps(_mm512_unpacklo_epi16(_mm512_setzero_si512(), h));
      out[1] = _mm512_castsi512_ps(_mm512_unpackhi_epi16(_mm512_setzero_si512(), h));
      return;
    }
#endif
#if defined(__AVX2__) && defined(__F16C__)
    if constexpr (kAvx2<Arch>) {
      const __m256i codes =
          _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
      const __m256i c7 = _mm256_and_si256(codes, _mm256_set1_epi16(0x7f));
      const __m256i small = _mm256_add_epi16(_mm256_slli_epi16(c7, 8), _mm256_set1_epi16(0x0400));
      const __m256i large = _mm256_add_epi16(_mm256_slli_epi16(c7, 7), _mm256_set1_epi16(0x2400));
      __m256i h = _mm256_blendv_epi8(small, large, _mm256_cmpgt_epi16(c7, _mm256_set1_epi16(63)));
      h = _mm256_andnot_si256(_mm256_cmpeq_epi16(c7, _mm256_setzero_si256()), h);
      h = _mm256_or_si256(h,
                          _mm256_and_si256(_mm256_slli_epi16(codes, 8), _mm256_set1_epi16(-32768)));
      out[0] = _mm256_cvtph_ps(_mm256_castsi256_si128(h));
      out[1] = _mm256_cvtph_ps(_mm256_extracti128_si256(h, 1));
      return;
    }
#endif
#if defined(__aarch64__)
    if constexpr (kNeon64<Arch>) {
      const uint16x8_t codes = vmovl_u8(vld1_u8(p));
      const uint16x8_t c7 = vandq_u16(codes, vdupq_n_u16(0x7f));
      const uint16x8_t small = vaddq_u16(vshlq_n_u16(c7, 8), vdupq_n_u16(0x0400));
      const uint16x8_t large = vaddq_u16(vshlq_n_u16(c7, 7), vdupq_n_u16(0x2400));
      uint16x8_t h = vbslq_u16(vcgtq_u16(c7, vdupq_n_u16(63)), large, small);
      h = vandq_u16(h, vtstq_u16(c7, c7));  // code 0 -> 0
      h = vorrq_u16(h, vandq_u16(vshlq_n_u16(codes, 8), vdupq_n_u16(0x8000)));
      out[0] = vcvt_f32_f16(vreinterpret_f16_u16(vget_low_u16(h)));
      out[1] = vcvt_f32_f16(vreinterpret_f16_u16(vget_high_u16(h)));
      return;
    }
#endif
    (void)p;
    this->Scalar(*this, n, c * kChunk, kChunk, out);
  }
};

// int8: chunk = one group of 32, weight = scale · code.
template <class Arch>
struct Decoder<Arch, Format::kInt8> : DecoderBase<Arch, Decoder<Arch, Format::kInt8>> {
  static constexpr size_t N = VF<Arch>::size, kChunk = kInt8GroupSize, kVecs = kChunk / N;
  static constexpr size_t kChunkBytes = kChunk;
  static constexpr bool kPadded = true;
  const QTensor& w;
  explicit Decoder(const QTensor& t) : w(t) {}
  const uint8_t* Row(size_t n) const { return w.data + n * w.desc.row_bytes; }
  float Scale(size_t n, size_t g) const {
    return HalfToFloat<Arch>(w.scales[n * w.desc.groups_per_row + g]);
  }
  // The first `count` group scales of row n as f32.
  void Scales(size_t n, size_t count, float* out) const {
    HalfsToFloats<Arch>(w.scales + n * w.desc.groups_per_row, count, out);
  }
  float At(size_t n, size_t c) const {
    return Scale(n, c / kChunk) * static_cast<float>(static_cast<int8_t>(Row(n)[c]));
  }
  static constexpr bool kChunkScaled = true;
  // The codes of chunk c as floats, without the scale.
  void Raw(size_t n, size_t c, VF<Arch>* out) const {
    const uint8_t* p = Row(n) + c * kChunkBytes;
#if defined(__AVX512F__)
    if constexpr (kAvx512<Arch>) {
      const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
      out[0] = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_castsi256_si128(b)));
      out[1] = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_extracti128_si256(b, 1)));
      return;
    }
#endif
#if defined(__AVX2__)
    if constexpr (kAvx2<Arch>) {
      for (size_t v = 0; v < kVecs; ++v) {
        const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + 8 * v));
        out[v] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b));
      }
      return;
    }
#endif
#if defined(__aarch64__)
    if constexpr (kNeon64<Arch>) {
      for (size_t v = 0; v < kVecs; v += 4) {
        const int8x16_t b = vld1q_s8(reinterpret_cast<const int8_t*>(p + 16 * (v / 4)));
        const int16x8_t lo = vmovl_s8(vget_low_s8(b)), hi = vmovl_s8(vget_high_s8(b));
        out[v + 0] = vcvtq_f32_s32(vmovl_s16(vget_low_s16(lo)));
        out[v + 1] = vcvtq_f32_s32(vmovl_s16(vget_high_s16(lo)));
        out[v + 2] = vcvtq_f32_s32(vmovl_s16(vget_low_s16(hi)));
        out[v + 3] = vcvtq_f32_s32(vmovl_s16(vget_high_s16(hi)));
      }
      return;
    }
#endif
    alignas(64) float t[kChunk];
    for (size_t j = 0; j < kChunk; ++j) t[j] = static_cast<float>(static_cast<int8_t>(p[j]));
    for (size_t v = 0; v < kVecs; ++v) out[v] = VF<Arch>::load_aligned(t + v * N);
  }
  void Full(size_t n, size_t c, VF<Arch>* out) const {
    Raw(n, c, out);
    const VF<Arch> s(Scale(n, c));
    for (size_t v = 0; v < kVecs; ++v) out[v] *= s;
  }
};

// q4: chunk = one block of 64 inputs (32 bytes: input j in the low nibble of
// byte j, input j + 32 in the high nibble); weight = scale · (code − zero).
// A block lies in one group (64, 128) or spans two (32): lo and hi halves
// each get their own scale and zero.
template <class Arch>
struct Decoder<Arch, Format::kQ4> : DecoderBase<Arch, Decoder<Arch, Format::kQ4>> {
  static constexpr size_t N = VF<Arch>::size, kChunk = kQ4BlockSize, kVecs = kChunk / N;
  static constexpr size_t kChunkBytes = kChunk / 2;
  static constexpr bool kPadded = true;
  const QTensor& w;
  explicit Decoder(const QTensor& t) : w(t) {}
  const uint8_t* Row(size_t n) const { return w.data + n * w.desc.row_bytes; }
  size_t Group(size_t n, size_t c) const {
    return n * w.desc.groups_per_row + c / w.desc.group_size;
  }
  float At(size_t n, size_t c) const {
    const uint8_t byte = Row(n)[(c / kChunk) * kChunkBytes + c % kChunkBytes];
    const int q = (c % kChunk) < kChunkBytes ? (byte & 0x0F) : (byte >> 4);
    const size_t g = Group(n, c);
    return HalfToFloat<Arch>(w.scales[g]) * static_cast<float>(q - w.zeros[g]);
  }
  void Full(size_t n, size_t c, VF<Arch>* out) const {
    const uint8_t* p = Row(n) + c * kChunkBytes;
    const size_t g_lo = Group(n, c * kChunk), g_hi = Group(n, c * kChunk + kChunkBytes);
    const float s_lo_f = HalfToFloat<Arch>(w.scales[g_lo]);
    const float s_hi_f = HalfToFloat<Arch>(w.scales[g_hi]);
    const VF<Arch> s_lo(s_lo_f), s_hi(s_hi_f);
    const VF<Arch> o_lo(-s_lo_f * w.zeros[g_lo]), o_hi(-s_hi_f * w.zeros[g_hi]);
#if defined(__AVX512F__)
    if constexpr (kAvx512<Arch>) {
      // A 16-entry table of the dequantized values (q − z)·s per half, then
      // vpermps: it reads only the low 4 bits of each index lane, so the
      // zero-extended byte indexes its low nibble directly.
      const __m512 iota = _mm512_set_ps(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
      const __m512 lut_lo = xsimd::fma(VF<Arch>(iota), s_lo, o_lo);
      const __m512 lut_hi = g_hi == g_lo ? lut_lo : xsimd::fma(VF<Arch>(iota), s_hi, o_hi).data;
      for (size_t v = 0; v < 2; ++v) {
        const __m512i b =
            _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16 * v)));
        out[v] = _mm512_permutexvar_ps(b, lut_lo);
        out[v + 2] = _mm512_permutexvar_ps(_mm512_srli_epi32(b, 4), lut_hi);
      }
      return;
    }
#endif
#if defined(__AVX2__)
    if constexpr (kAvx2<Arch>) {
      for (size_t v = 0; v < 4; ++v) {
        const __m256i b =
            _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + 8 * v)));
        const VF<Arch> lo = _mm256_cvtepi32_ps(_mm256_and_si256(b, _mm256_set1_epi32(15)));
        const VF<Arch> hi = _mm256_cvtepi32_ps(_mm256_srli_epi32(b, 4));
        out[v] = xsimd::fma(lo, s_lo, o_lo);
        out[v + 4] = xsimd::fma(hi, s_hi, o_hi);
      }
      return;
    }
#endif
#if defined(__aarch64__)
    if constexpr (kNeon64<Arch>) {
      for (size_t v = 0; v < 2; ++v) {
        const uint8x16_t b = vld1q_u8(p + 16 * v);
        const uint8x16_t nib[2] = {vandq_u8(b, vdupq_n_u8(15)), vshrq_n_u8(b, 4)};
        for (size_t h = 0; h < 2; ++h) {
          const uint16x8_t lo16 = vmovl_u8(vget_low_u8(nib[h]));
          const uint16x8_t hi16 = vmovl_u8(vget_high_u8(nib[h]));
          const VF<Arch>& s = h ? s_hi : s_lo;
          const VF<Arch>& o = h ? o_hi : o_lo;
          VF<Arch>* dst = out + 8 * h + 4 * v;
          dst[0] = xsimd::fma(VF<Arch>(vcvtq_f32_u32(vmovl_u16(vget_low_u16(lo16)))), s, o);
          dst[1] = xsimd::fma(VF<Arch>(vcvtq_f32_u32(vmovl_u16(vget_high_u16(lo16)))), s, o);
          dst[2] = xsimd::fma(VF<Arch>(vcvtq_f32_u32(vmovl_u16(vget_low_u16(hi16)))), s, o);
          dst[3] = xsimd::fma(VF<Arch>(vcvtq_f32_u32(vmovl_u16(vget_high_u16(hi16)))), s, o);
        }
      }
      return;
    }
#endif
    this->Scalar(*this, n, c * kChunk, kChunk, out);
  }
};

// Chunks per row: `full` whole ones and a last one of `tail` inputs (0: none).
template <class D>
struct ChunkCounts {
  size_t full = 0, tail = 0, total = 0, padded_k = 0;
  explicit ChunkCounts(const QTensor& w) {
    const size_t len = D::kPadded ? w.desc.padded_cols : w.desc.cols;
    full = len / D::kChunk;
    tail = len % D::kChunk;
    total = full + (tail != 0);
    padded_k = total * D::kChunk;
  }
};

// ---------------------------------------------------------------------------
// m == 1: each weight row front to back, and rows in order, so the call reads
// its rows as sequential streams: one, or two from the two halves of the
// range (Gemv). (Interleaving neighbouring rows, each a short stream of a few
// KiB, defeats the hardware prefetcher: on the Zen 4 VM this was written on,
// 4 interleaved rows read at ~60 % of the speed of one sequential stream even
// without any arithmetic.)
// ---------------------------------------------------------------------------

// Software prefetch of the weight stream, kPrefetchAhead bytes ahead into
// L2 (prefetcht1, locality 2), for every row length. Zen 4 (sessions 3-7)
// needed it only for long rows (K >= 4096, Gemma's down projection: bf16
// 0.33 -> 0.68 of the probe at 2304x9216) and measured short rows as fast
// without it. On the Zen 5 VM of session 8 the short rows fall behind too:
// 9216x2304, M=1, fraction of the probe without -> with the prefetch, int8
// 0.75 -> 0.91-1.06, sfp8 0.59 -> 0.70-0.81, bf16 0.93 -> 0.96, f32 flat
// within the VM's noise; 16 and 24 KiB ahead were no better, 32 KiB worse
// (docs/benchmarks.md, session 8). The int8 decode (matmul_i16-inl.h)
// takes the same hint.
inline constexpr size_t kPrefetchAhead = 8192;
// Rows at least this long count as long: f32 and bf16 may prefetch their
// weights non-temporally there (Zen 5), sfp8 decodes in K blocks, and the
// avx512 table decodes int8 on 256-bit vectors.
inline constexpr size_t kLongRowK = 4096;
inline constexpr int kPrefetchLocality = 2;
// GemvKBlocked: the most bytes of x one K block uses (16 KiB: half of Zen
// 4's L1, leaving room for the weight lines in flight).
inline constexpr size_t kXBlockBytes = 16384;
// Long f32/bf16 rows: x (f32, 4 bytes per input) and one row of weights no
// longer fit L1 together, and every weight line that comes in evicts a line
// of x, which then returns from L2 for the next row: up to two extra L1
// fills per weight line, competing with the weight stream's. A bf16 decode
// whose x was folded into a 32-chunk window (wrong results, same weight
// stream) read 2304x9216 at 1.07-1.15 of a read-sum stream instead of
// 0.75-0.84 (session 11, one Zen 5 core). prefetchnta (weights are used
// once) recovers part of that there, presumably by keeping more of x in L1:
// 0.75-0.94 vs 0.66-0.74 interleaved, 1 thread; 37-43 vs 33-36 GB/s at 2
// threads. On an Intel Xeon (Emerald Rapids, session 12) the same hint
// HALVED the long rows (f32 and bf16 2304x9216: 0.43-0.47 of the probe vs
// 0.77-0.92 with prefetcht1), so it is not the default: the registry patches
// the nta variants (FillMatmulNtaLongRows) in on AMD family 1Ah (Zen 5) only.
// Short rows read slower with it on Zen 5 too, and the int8 decode (x as
// int16) gained nothing (docs/benchmarks.md).
inline constexpr int kPrefetchLocalityNta = 0;

// Prefetches the line `Ahead` bytes past p (locality 2: into L2).
// always_inline: GCC 12 silently dropped the prefetch of a plain inline
// function called from an always_inline lambda (the int8 decode's group
// step).
template <size_t Ahead = kPrefetchAhead, int Locality = kPrefetchLocality>
__attribute__((always_inline)) inline void PrefetchWeights(const uint8_t* p) {
  __builtin_prefetch(p + Ahead, 0, Locality);
}

// The distance for decoder D: D::kPrefetchAhead where a decoder sets one.
template <class D>
inline constexpr size_t kPrefetchAheadOf = [] {
  if constexpr (requires { D::kPrefetchAhead; }) {
    return D::kPrefetchAhead;
  } else {
    return kPrefetchAhead;
  }
}();

// For each of R rows n + r·step: acc0[r]/acc1[r] += chunk c of that row · x
// (two chains: vectors alternate). The x vectors are loaded once for all R
// rows; each row's arithmetic is the same for any R and step, so neither
// ever changes a result.
template <class Arch, size_t R, int Locality, class D>
inline void GemvChunk(const D& dec, const float* xs, const float* chunk_scale, size_t n, size_t c,
                      size_t step, VF<Arch> (&acc0)[R], VF<Arch> (&acc1)[R]) {
  using V = VF<Arch>;
  constexpr size_t N = V::size, kV = D::kVecs;
  static_assert(R == 1 || !D::kChunkScaled, "chunk scales are per row: one row at a time");
  // Prefetch once per 64-byte line: the chunk's one line where chunks are
  // at most a line (the chunk that starts it), every line of longer chunks
  // (f32 on 512-bit vectors: 128 bytes).
  static_assert(D::kChunkBytes <= 64 || D::kChunkBytes % 64 == 0);
  if (const size_t at = c * D::kChunkBytes; at % 64 < D::kChunkBytes) {
    for (size_t r = 0; r < R; ++r) {
      for (size_t l = 0; l < D::kChunkBytes; l += 64) {
        PrefetchWeights<kPrefetchAheadOf<D>, Locality>(dec.Row(n + r * step) + at + l);
      }
    }
  }
  const float* x = xs + c * D::kChunk;
  V wv[kV];
  if constexpr (D::kChunkScaled) {
    // One scale per chunk: dot the raw codes, then scale once.
    dec.Raw(n, c, wv);
    V t = wv[0] * V::load_aligned(x);
    for (size_t v = 1; v < kV; ++v) t = xsimd::fma(wv[v], V::load_aligned(x + v * N), t);
    acc0[0] = xsimd::fma(t, V(chunk_scale[c]), acc0[0]);
  } else {
    V xv[kV];
    for (size_t v = 0; v < kV; ++v) xv[v] = V::load_aligned(x + v * N);
    for (size_t r = 0; r < R; ++r) {
      dec.Full(n + r * step, c, wv);
      for (size_t v = 0; v < kV; v += 2) {
        acc0[r] = xsimd::fma(wv[v], xv[v], acc0[r]);
        if (v + 1 < kV) acc1[r] = xsimd::fma(wv[v + 1], xv[v + 1], acc1[r]);
      }
    }
  }
}

// y[n + r·step] = row n + r·step · x for r < R, prefetching with Locality.
template <class Arch, size_t R, int Locality, class D>
void GemvRows(const D& dec, const ChunkCounts<D>& cc, const float* xs, size_t n, size_t step,
              float* y, float* chunk_scale) {
  using V = VF<Arch>;
  constexpr size_t N = V::size, kV = D::kVecs;
  // Four accumulator chains per row (FMA latency × throughput): vectors
  // alternate within a chunk, chunks alternate between two pairs (unrolled,
  // so the accumulators stay in registers).
  V a0[R], a1[R], a2[R], a3[R];
  for (size_t r = 0; r < R; ++r) a0[r] = a1[r] = a2[r] = a3[r] = V(0.0f);
  if constexpr (D::kChunkScaled) dec.Scales(n, cc.full, chunk_scale);
  size_t c = 0;
  for (; c + 1 < cc.full; c += 2) {
    GemvChunk<Arch, R, Locality>(dec, xs, chunk_scale, n, c, step, a0, a1);
    GemvChunk<Arch, R, Locality>(dec, xs, chunk_scale, n, c + 1, step, a2, a3);
  }
  if (c < cc.full) GemvChunk<Arch, R, Locality>(dec, xs, chunk_scale, n, c, step, a0, a1);
  for (size_t r = 0; r < R; ++r) {
    if (cc.tail != 0) {
      V wv[kV];
      dec.Tail(n + r * step, cc.full, cc.tail, wv);
      for (size_t v = 0; v < kV; ++v) {
        a2[r] = xsimd::fma(wv[v], V::load_aligned(xs + cc.full * D::kChunk + v * N), a2[r]);
      }
    }
    float s = xsimd::hadd((a0[r] + a1[r]) + (a2[r] + a3[r]));
    if constexpr (D::kHasRowScale) s *= dec.RowScale(n + r * step);
    y[n + r * step] = s;
  }
}

// One chunk of GemvKBlocked: acc0/acc1 += chunk c of row n · x (vectors
// alternate), after a prefetch of the line at (pf_row, pf_off) of the
// block's read order where chunk c starts a line; the cursor then moves one
// line on, to the next row's segment where this one ends.
template <class Arch, int Locality, class D>
__attribute__((always_inline)) inline void KBlockChunk(const D& dec, const float* xs, size_t n,
                                                       size_t c, size_t seg_begin, size_t seg,
                                                       size_t& pf_row, size_t& pf_off,
                                                       VF<Arch>& acc0, VF<Arch>& acc1) {
  using V = VF<Arch>;
  constexpr size_t N = V::size, kV = D::kVecs, kCB = D::kChunkBytes;
  if ((c * kCB) % 64 < kCB) {
    for (size_t l = 0; l < kCB; l += 64) {
      __builtin_prefetch(dec.Row(pf_row) + seg_begin + pf_off, 0, Locality);
      pf_off += 64;
      if (pf_off >= seg) {
        pf_off -= seg;
        ++pf_row;
      }
    }
  }
  const float* x = xs + c * D::kChunk;
  V wv[kV];
  dec.Full(n, c, wv);
  for (size_t v = 0; v < kV; v += 2) {
    acc0 = xsimd::fma(wv[v], V::load_aligned(x + v * N), acc0);
    if (v + 1 < kV) acc1 = xsimd::fma(wv[v + 1], V::load_aligned(x + (v + 1) * N), acc1);
  }
}

// y[n] = row n · x for n in [n_begin, n_end), long rows cut into K blocks of
// `block_chunks` chunks: every row's first block, then every row's second,
// and so on, so the block of x in use (block_chunks · kChunk floats) stays
// in L1 while the weights stream past it. The prefetch follows the order
// the weights are read in (the next row's same block after this row's
// block), not the row in memory. Per row, each block's dot product is
// summed on its own and added to y in block order, so the result depends
// on the block size but not on the rows or threads. Chunk-scaled decoders
// are not blocked (their scales are per row).
template <class Arch, int Locality, class D>
void GemvKBlocked(const D& dec, const ChunkCounts<D>& cc, const float* xs, size_t n_begin,
                  size_t n_end, float* y, size_t block_chunks) {
  static_assert(!D::kChunkScaled);
  using V = VF<Arch>;
  constexpr size_t N = V::size, kV = D::kVecs, kCB = D::kChunkBytes;
  static_assert(kCB <= 64 || kCB % 64 == 0);
  for (size_t c0 = 0; c0 < cc.total; c0 += block_chunks) {
    const size_t c1 = std::min(cc.total, c0 + block_chunks);
    const size_t cf = std::min(c1, cc.full);  // full chunks of this block
    const size_t seg = (cf - c0) * kCB;       // bytes each row streams here
    if (seg == 0) continue;
    // The prefetch cursor: kPrefetchAheadOf<D> bytes ahead in read order.
    size_t pf_row = std::min(n_end - 1, n_begin + kPrefetchAheadOf<D> / seg);
    size_t pf_off = kPrefetchAheadOf<D> % seg;
    for (size_t n = n_begin; n < n_end; ++n) {
      V a0(0.0f), a1(0.0f), a2(0.0f), a3(0.0f);
      size_t c = c0;
      // The cursor is clamped to the last row: there the prefetch is
      // harmless (lines already read) and stays inside the tensor.
      for (; c + 1 < cf; c += 2) {
        KBlockChunk<Arch, Locality>(dec, xs, n, c, c0 * kCB, seg, pf_row, pf_off, a0, a1);
        KBlockChunk<Arch, Locality>(dec, xs, n, c + 1, c0 * kCB, seg, pf_row, pf_off, a2, a3);
        if (pf_row >= n_end) pf_row = n_end - 1;
      }
      if (c < cf) {
        KBlockChunk<Arch, Locality>(dec, xs, n, c, c0 * kCB, seg, pf_row, pf_off, a0, a1);
        if (pf_row >= n_end) pf_row = n_end - 1;
      }
      if (c1 == cc.total && cc.tail != 0) {
        V wv[kV];
        dec.Tail(n, cc.full, cc.tail, wv);
        for (size_t v = 0; v < kV; ++v) {
          a2 = xsimd::fma(wv[v], V::load_aligned(xs + cc.full * D::kChunk + v * N), a2);
        }
      }
      const float s = xsimd::hadd((a0 + a1) + (a2 + a3));
      y[n] = c0 == 0 ? s : y[n] + s;
    }
  }
  if constexpr (D::kHasRowScale) {
    for (size_t n = n_begin; n < n_end; ++n) y[n] *= dec.RowScale(n);
  }
}

// ---------------------------------------------------------------------------
// m >= 2: decoded panels and a register-blocked micro-kernel.
// ---------------------------------------------------------------------------

inline constexpr size_t kPanelRows = 4;
inline constexpr size_t kBlockM = 64;    // rows of x per block (x block in L2)
inline constexpr size_t kBlockK = 1024;  // inputs per K block (panel in L1)

template <class Arch>
inline constexpr size_t kTileM = kAvx512<Arch> || kNeon64<Arch> ? 6 : 2;  // by register count

// y[i, r] (+)= scale[r] · Σ_k panel[r][k] · x[i][k] for i < MT, r < nr.
template <class Arch, size_t MT>
void MicroKernel(const float* panel, size_t klen, const float* x, size_t ldx, float* y, size_t ldy,
                 size_t nr, const float* scale, bool accumulate) {
  using V = VF<Arch>;
  constexpr size_t R = kPanelRows, N = V::size;
  V acc[MT][R];
  for (size_t i = 0; i < MT; ++i) {
    for (size_t r = 0; r < R; ++r) acc[i][r] = V(0.0f);
  }
  for (size_t k = 0; k < klen; k += N) {
    V wv[R];
    for (size_t r = 0; r < R; ++r) wv[r] = V::load_aligned(panel + r * klen + k);
    for (size_t i = 0; i < MT; ++i) {
      const V xv = V::load_aligned(x + i * ldx + k);
      for (size_t r = 0; r < R; ++r) acc[i][r] = xsimd::fma(wv[r], xv, acc[i][r]);
    }
  }
  for (size_t i = 0; i < MT; ++i) {
    for (size_t r = 0; r < R; ++r) {
      if (r >= nr) break;  // constant bound keeps acc in registers
      const float v = xsimd::hadd(acc[i][r]) * scale[r];
      y[i * ldy + r] = accumulate ? y[i * ldy + r] + v : v;
    }
  }
}

template <class Arch, size_t MT = kTileM<Arch>>
void MicroKernelDispatch(size_t mt, const float* panel, size_t klen, const float* x, size_t ldx,
                         float* y, size_t ldy, size_t nr, const float* scale, bool accumulate) {
  if constexpr (MT > 1) {
    if (mt < MT) {
      MicroKernelDispatch<Arch, MT - 1>(mt, panel, klen, x, ldx, y, ldy, nr, scale, accumulate);
      return;
    }
  }
  MicroKernel<Arch, MT>(panel, klen, x, ldx, y, ldy, nr, scale, accumulate);
}

template <class Arch, class D>
void MatmulTiled(const D& dec, const ChunkCounts<D>& cc, const float* xs, size_t ldx, size_t m,
                 size_t n_begin, size_t n_end, float* y, size_t ldy) {
  using V = VF<Arch>;
  constexpr size_t R = kPanelRows, kcChunks = std::max<size_t>(1, kBlockK / D::kChunk);
  float* panel = static_cast<float*>(Scratch<Arch, 1>(R * kcChunks * D::kChunk * sizeof(float)));
  for (size_t i0 = 0; i0 < m; i0 += kBlockM) {
    const size_t mb = std::min(kBlockM, m - i0);
    for (size_t c0 = 0; c0 < cc.total; c0 += kcChunks) {
      const size_t c1 = std::min(cc.total, c0 + kcChunks), klen = (c1 - c0) * D::kChunk;
      for (size_t n0 = n_begin; n0 < n_end; n0 += R) {
        const size_t nr = std::min(R, n_end - n0);
        float scale[R];
        for (size_t r = 0; r < R; ++r) {
          const size_t n = n0 + std::min(r, nr - 1);
          scale[r] = D::kHasRowScale ? dec.RowScale(n) : 1.0f;
          float* dst = panel + r * klen;
          for (size_t c = c0; c < c1; ++c) {
            V wv[D::kVecs];
            if (c < cc.full) {
              dec.Full(n, c, wv);
            } else {
              dec.Tail(n, c, cc.tail, wv);
            }
            for (size_t v = 0; v < D::kVecs; ++v) {
              wv[v].store_aligned(dst + (c - c0) * D::kChunk + v * V::size);
            }
          }
        }
        for (size_t i = 0; i < mb; i += kTileM<Arch>) {
          const size_t mt = std::min(kTileM<Arch>, mb - i);
          MicroKernelDispatch<Arch>(mt, panel, klen, xs + (i0 + i) * ldx + c0 * D::kChunk, ldx,
                                    y + (i0 + i) * ldy + n0, ldy, nr, scale, c0 != 0);
        }
      }
    }
  }
}

// Decode (m == 1) of rows [n_begin, n_end) with the kernels of Arch; long
// rows (K >= kLongRowK) prefetch with LongLocality.
template <class Arch, Format F, int LongLocality>
void Gemv(const QTensor& w, const float* x, float* y, size_t n_begin, size_t n_end) {
  using D = Decoder<Arch, F>;
  const D dec(w);
  const ChunkCounts<D> cc(w);
  const float* xs = StoredXFor<Arch, D>(x, 1, w.desc.cols, w.perm, cc.padded_k);
  float* chunk_scale = nullptr;  // per-row scratch for chunk-scaled formats
  if constexpr (D::kChunkScaled) {
    chunk_scale = static_cast<float*>(Scratch<Arch, 3>(cc.full * sizeof(float)));
  }
  // Long sfp8 rows: K blocks of at most kXBlockBytes of x (GemvKBlocked).
  // sfp8 reads 4 bytes of x per weight byte, the most of any format, and
  // at K = 9216 x (36 KiB) does not fit Zen 4's 32 KiB L1 beside the
  // weights. 2304×9216, M=1, 1 thread, avx512, bw_frac_paired in 3 rounds
  // alternating (session 16, Zen 4 VM): 0.36 / 0.36 / 0.36 unblocked, 0.67 /
  // 0.67 / 0.66 blocked; the avx2 table (decode-bound there) 0.27 either
  // way. The same blocks measured no gain for bf16 (0.72 -> 0.73) and a loss
  // for f32 (0.73 -> 0.62), so they stay unblocked (docs/benchmarks.md).
  if constexpr (F == Format::kSFP8) {
    if (cc.padded_k >= kLongRowK) {
      const size_t blocks = (cc.padded_k * sizeof(float) + kXBlockBytes - 1) / kXBlockBytes;
      return GemvKBlocked<Arch, LongLocality>(dec, cc, xs, n_begin, n_end, y,
                                              (cc.total + blocks - 1) / blocks);
    }
  }
  const bool long_rows = cc.padded_k >= kLongRowK;
  size_t n = n_begin;
  // f32 and bf16: two rows per step that lie half the range apart, each
  // read front to back, so the call reads two long sequential streams and
  // every x load serves both rows. At M=1, 1 thread, bw_frac_paired,
  // alternated (session 18, Zen 5 VM): 2304x9216 bf16 0.72-0.78 -> 0.91-
  // 1.00, f32 0.84-0.90 -> 0.90-1.02; 9216x2304 bf16 0.81-0.88 -> 0.94-1.06,
  // f32 0.70-0.82 -> 0.88-0.93 (f32's long rows were read in pairs of
  // neighbouring rows before, as Zen 4 preferred in session 7). Neighbouring
  // rows as bf16's pair (rows of a few KiB interleaved, which defeats the
  // hardware prefetcher) lost there (2304x9216 0.58-0.60 vs 0.71-0.74), as on
  // Zen 4, and far pairs lost for sfp8 (0.34-0.40 vs 0.49-0.72: its decode is
  // compute-bound and short of registers).
  // R rows n + r·step, with the prefetch hint of this row length.
  auto rows = [&]<size_t R>(size_t first, size_t step) {
    if (long_rows) {
      GemvRows<Arch, R, LongLocality>(dec, cc, xs, first, step, y, chunk_scale);
    } else {
      GemvRows<Arch, R, kPrefetchLocality>(dec, cc, xs, first, step, y, chunk_scale);
    }
  };
  if constexpr (F == Format::kF32 || F == Format::kBF16) {
    const size_t half = (n_end - n_begin) / 2;
    for (size_t i = 0; i < half; ++i) rows.template operator()<2>(n_begin + i, half);
    n += 2 * half;
  }
  for (; n < n_end; ++n) rows.template operator()<1>(n, 1);
}

// The arch decode runs with: Arch itself, except in the avx512 table for
// formats whose decoders gain nothing from 512 bits (see avx512_ymm), unless
// the table asks for full width (FillMatmulFullWidthF32).
template <class Arch, Format F, bool FullWidth>
struct GemvArch {
  using type = Arch;
};
#if defined(__AVX512F__) && defined(__AVX2__) && defined(__FMA__)
template <Format F, bool FullWidth>
struct GemvArch<xsimd::avx512bw, F, FullWidth> {
  using type = std::conditional_t<FullWidth || F == Format::kQ4 || F == Format::kSFP8,
                                  xsimd::avx512bw, avx512_ymm>;
};
#endif

template <class Arch, Format F, int LongLocality = kPrefetchLocality, bool FullWidthDecode = false>
void Matmul(const QTensor& w, const float* x, size_t m, float* y, size_t n_begin, size_t n_end) {
  CheckMatmulArgs(w, F, n_begin, n_end);
  if (m == 0 || n_begin == n_end) return;
  if (m == 1) {
    return Gemv<typename GemvArch<Arch, F, FullWidthDecode>::type, F, LongLocality>(w, x, y,
                                                                                    n_begin, n_end);
  }
  using D = Decoder<Arch, F>;
  const D dec(w);
  const ChunkCounts<D> cc(w);
  const float* xs = StoredXFor<Arch, D>(x, m, w.desc.cols, w.perm, cc.padded_k);
  MatmulTiled<Arch>(dec, cc, xs, cc.padded_k, m, n_begin, n_end, y, w.desc.rows);
}

// ---------------------------------------------------------------------------
// Activation quantization (int8, blocks of 32 or 64), identical codes to the
// scalar reference: scale = amax / 127, q = nearest-even(x · (1 / scale)).
// ---------------------------------------------------------------------------
template <class Arch, size_t B>
void QuantizeActsBlocks(const float* xs, size_t m, size_t kp, int8_t* q, float* scales,
                        int32_t* sums) {
  using V = VF<Arch>;
  using VI = xsimd::batch<int32_t, Arch>;
  constexpr size_t N = V::size;
  static_assert(B % N == 0);
  const size_t blocks = kp / B;
  for (size_t i = 0; i < m; ++i) {
    for (size_t b = 0; b < blocks; ++b) {
      const float* src = xs + i * kp + b * B;
      V v[B / N];
      V amax(0.0f);
      for (size_t j = 0; j < B / N; ++j) {
        v[j] = V::load_aligned(src + j * N);
        amax = xsimd::max(amax, xsimd::abs(v[j]));
      }
      alignas(64) float lanes[N];
      amax.store_aligned(lanes);
      float a = 0.0f;
      for (size_t j = 0; j < N; ++j) a = std::max(a, lanes[j]);
      const float scale = Q8Scale(a);
      const V inv(Q8InvScale(scale));
      alignas(64) int32_t qi[B];
      for (size_t j = 0; j < B / N; ++j) {
        VI r = xsimd::nearbyint_as_int(v[j] * inv);
        r = xsimd::min(VI(127), xsimd::max(VI(-127), r));
        r.store_aligned(qi + j * N);
      }
      int32_t sum = 0;
      int8_t* dst = q + i * kp + b * B;
      for (size_t j = 0; j < B; ++j) {
        dst[j] = static_cast<int8_t>(qi[j]);
        sum += qi[j];
      }
      scales[i * blocks + b] = scale;
      sums[i * blocks + b] = sum;
    }
  }
}

template <class Arch>
void QuantizeActs(const float* x, size_t m, size_t k, const int32_t* perm, size_t block, int8_t* q,
                  float* scales, int32_t* sums) {
  CheckQ8ActBlock(block);
  const size_t kp = (k + 63) / 64 * 64;
  const float* xs = StoredX<Arch>(x, m, k, perm, kp);
  if (block == kQ8ActBlockWide) {
    QuantizeActsBlocks<Arch, kQ8ActBlockWide>(xs, m, kp, q, scales, sums);
  } else {
    QuantizeActsBlocks<Arch, kQ8ActBlock>(xs, m, kp, q, scales, sums);
  }
}

}  // namespace mm

}  // namespace qlm::kernels::simd

#include "kernels/simd/matmul_i16-inl.h"
#include "kernels/simd/matmul_q8-inl.h"

namespace qlm::kernels::simd {

template <class Arch>
void FillMatmul(KernelTable& t) {
  t.matmul[static_cast<int>(Format::kF32)] = mm::Matmul<Arch, Format::kF32>;
  t.matmul[static_cast<int>(Format::kBF16)] = mm::Matmul<Arch, Format::kBF16>;
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
  t.matmul[static_cast<int>(Format::kInt8)] = mm::MatmulInt8X86<Arch>;
#else
  t.matmul[static_cast<int>(Format::kInt8)] = mm::Matmul<Arch, Format::kInt8>;
#endif
  t.matmul[static_cast<int>(Format::kQ4)] = mm::Matmul<Arch, Format::kQ4>;
  t.matmul[static_cast<int>(Format::kSFP8)] = mm::Matmul<Arch, Format::kSFP8>;
  t.quantize_acts = mm::QuantizeActs<Arch>;
  FillMatmulQ8<Arch>(t);
}

// The f32/bf16 entries whose long-row decode prefetches with prefetchnta:
// faster on Zen 5, twice as slow on Emerald Rapids (see
// kPrefetchLocalityNta); the registry applies this on top of FillMatmul
// where it was measured to pay.
template <class Arch>
void FillMatmulNtaLongRows(KernelTable& t) {
  t.matmul[static_cast<int>(Format::kF32)] =
      mm::Matmul<Arch, Format::kF32, mm::kPrefetchLocalityNta>;
  t.matmul[static_cast<int>(Format::kBF16)] =
      mm::Matmul<Arch, Format::kBF16, mm::kPrefetchLocalityNta>;
}

// The f32 entry whose decode (M = 1) runs on the table's full vector width
// instead of avx512_ymm. On Emerald Rapids, 512-bit f32 decode streams at
// 0.95-0.98 of the read probe against 0.75-0.93 with 256 bits (one thread,
// qlm-bench-kernels, 9216x2304 and 2304x9216, three alternated rounds;
// docs/benchmarks.md, session 14). Zen 4 measured the opposite in sessions
// 3-7 (older decode code), but on the Zen 4 VM of session 16 the 512-bit
// decode read 0.76-0.82 against 0.72-0.74 at 9216x2304 and 0.72-0.77
// against 0.72-0.74 at 2304x9216 (four alternated rounds), and the
// Gemma-2-2B f32 model at 2 threads decoded at 82.3 / 99.1 / 96.1 % (paired)
// against 76.9 / 95.5 / 90.0 % in three alternated rounds; the registry
// applies this on Intel and on AMD family 19h. The same for bf16 was slower
// there (2304x9216: 0.48-0.50 against 0.72-0.73).
template <class Arch>
void FillMatmulFullWidthF32(KernelTable& t) {
  t.matmul[static_cast<int>(Format::kF32)] =
      mm::Matmul<Arch, Format::kF32, mm::kPrefetchLocality, true>;
}

}  // namespace qlm::kernels::simd
