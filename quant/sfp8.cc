// SFP8 (gemma.cpp's switched floating point), scalar reference codec.
//
// Code layout (docs/formats.md has the full table):
//   bit 7      sign (0x80 alone is reserved and decodes to 0)
//   bit 6 = 1  "large": bits 5..3 exponent e, bits 2..0 mantissa m,
//              |v| = 2^(e-7) · (1 + m/8)      in [2^-7, 1.875]
//   bit 6 = 0  "small": bits 5..2 exponent e, bits 1..0 mantissa m,
//              |v| = 2^(e-23) · (1 + m/4)     in [1.25·2^-23, 1.75·2^-8]
//              (e = m = 0 is the code for zero, so 2^-23 itself is absent)
// Magnitudes increase strictly with the low 7 bits of the code, so encoding is
// "nearest entry of a sorted table"; ties go to the even code, which is the
// code whose mantissa is even, i.e. IEEE round-to-nearest-even.
#include "quant/sfp8.h"

#include <array>
#include <bit>
#include <cmath>
#include <cstdint>

namespace qlm {
namespace {

constexpr float Pow2(int e) {
  float v = 1.0f;
  for (; e > 0; --e) v *= 2.0f;
  for (; e < 0; ++e) v *= 0.5f;
  return v;
}

constexpr float MagnitudeOf(uint32_t c7) {
  if (c7 == 0) return 0.0f;
  if (c7 & 0x40u) {
    const int e = static_cast<int>((c7 >> 3) & 7u);
    return Pow2(e - 7) * (1.0f + static_cast<float>(c7 & 7u) / 8.0f);
  }
  const int e = static_cast<int>((c7 >> 2) & 15u);
  return Pow2(e - 23) * (1.0f + static_cast<float>(c7 & 3u) / 4.0f);
}

constexpr std::array<float, 256> MakeDecodeTable() {
  std::array<float, 256> t{};
  for (uint32_t c = 0; c < 256; ++c) {
    const float m = MagnitudeOf(c & 0x7fu);
    t[c] = (c & 0x80u) ? -m : m;
  }
  t[0x80] = 0.0f;  // reserved ("-0"): decodes to +0
  return t;
}

constexpr std::array<float, 256> kDecode = MakeDecodeTable();

// Rounds the f32 bit pattern `u` (positive, normal) to `bits` mantissa bits,
// ties to even; a carry out of the mantissa correctly bumps the exponent.
inline uint32_t RoundMantissa(uint32_t u, int bits) {
  const int drop = 23 - bits;
  const uint32_t half_minus_1 = (1u << (drop - 1)) - 1u;
  u += half_minus_1 + ((u >> drop) & 1u);
  return u & ~((1u << drop) - 1u);
}

constexpr uint32_t kMaxBits = 0x3ff00000u;           // 1.875f
constexpr uint32_t kLargeMinBits = 0x3c000000u;      // 2^-7
constexpr uint32_t kSmallMinBits = 0x34200000u;      // 1.25·2^-23
constexpr uint32_t kHalfSmallMinBits = 0x33a00000u;  // 0.625·2^-23

// Branch-free (selects only) so that loops over it vectorize.
inline uint8_t EncodeOne(float v) {
  const uint32_t bits = std::bit_cast<uint32_t>(v);
  const uint32_t sign = (bits >> 24) & 0x80u;
  uint32_t a = bits & 0x7fffffffu;
  a = a > 0x7f800000u ? 0u : a;     // NaN -> 0
  a = a > kMaxBits ? kMaxBits : a;  // saturate, including Inf
  // Three mantissa bits ("large"): (biased exponent << 3 | m) - (120 << 3)
  // + 0x40. Exact whenever the 3-bit rounding stays >= 2^-7.
  const uint32_t r3 = RoundMantissa(a, 3);
  const uint32_t large = (r3 >> 20) - (120u << 3) + 0x40u;
  // Two mantissa bits ("small"): (biased exponent << 2 | m) - (104 << 2).
  // A value that rounds up to 2^-7 yields 0x40 here too, so the two
  // roundings agree at the boundary.
  const uint32_t r2 = RoundMantissa(a, 2);
  const uint32_t small = (r2 >> 21) - (104u << 2);
  // Below 1.25·2^-23: nearest of {0, 1.25·2^-23}; the midpoint goes to 0.
  const uint32_t tiny = a > kHalfSmallMinBits ? 1u : 0u;
  const uint32_t c7 = r3 >= kLargeMinBits ? large : (a >= kSmallMinBits ? small : tiny);
  return static_cast<uint8_t>(c7 == 0 ? 0u : (sign | c7));  // never the reserved 0x80
}

}  // namespace

float Sfp8Decode(uint8_t code) { return kDecode[code]; }

uint8_t Sfp8Encode(float v) { return EncodeOne(v); }

void Sfp8EncodeScaled(const float* in, uint64_t n, float scale, uint8_t* out) {
  for (uint64_t i = 0; i < n; ++i) out[i] = EncodeOne(in[i] / scale);
}

}  // namespace qlm
