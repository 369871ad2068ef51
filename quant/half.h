// bf16 and IEEE f16 <-> f32 conversions (scalar; bit-exact, header-only so hot
// loops can inline them).
#pragma once

#include <bit>
#include <cstdint>

namespace qlm {

inline float BF16ToF32(uint16_t b) { return std::bit_cast<float>(static_cast<uint32_t>(b) << 16); }

// f rounded to the nearest bf16 value, ties to even, as a float. NaN stays
// NaN (quiet bit forced so that a NaN whose payload lives only in the low
// bits does not become Inf). Branchless, so loops over it vectorize.
inline float RoundToBF16(float f) {
  const uint32_t u = std::bit_cast<uint32_t>(f);
  const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
  const uint32_t nan = (u | 0x00400000u) & 0xffff0000u;
  return std::bit_cast<float>((u & 0x7fffffffu) > 0x7f800000u ? nan : rounded);
}

// The bf16 bits of RoundToBF16(f).
inline uint16_t F32ToBF16(float f) {
  return static_cast<uint16_t>(std::bit_cast<uint32_t>(RoundToBF16(f)) >> 16);
}

float F16ToF32(uint16_t h);
uint16_t F32ToF16(float f);  // round to nearest even; overflow -> Inf; NaN kept

}  // namespace qlm
