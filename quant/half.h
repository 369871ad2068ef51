// bf16 and IEEE f16 <-> f32 conversions (scalar; bit-exact, header-only so hot
// loops can inline them).
#pragma once

#include <bit>
#include <cstdint>

namespace qlm {

inline float BF16ToF32(uint16_t b) { return std::bit_cast<float>(static_cast<uint32_t>(b) << 16); }

// Round to nearest, ties to even. NaN stays NaN (quiet bit forced so that a
// NaN whose payload lives only in the low bits does not become Inf).
inline uint16_t F32ToBF16(float f) {
  uint32_t u = std::bit_cast<uint32_t>(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

// f rounded to the nearest bf16 value (ties to even), as a float: the same
// rounding as F32ToBF16, written without branches so loops over it
// vectorize.
inline float RoundToBF16(float f) {
  const uint32_t u = std::bit_cast<uint32_t>(f);
  const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
  const uint32_t nan = (u | 0x00400000u) & 0xffff0000u;
  return std::bit_cast<float>((u & 0x7fffffffu) > 0x7f800000u ? nan : rounded);
}

float F16ToF32(uint16_t h);
uint16_t F32ToF16(float f);  // round to nearest even; overflow -> Inf; NaN kept

}  // namespace qlm
