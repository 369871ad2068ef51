// SFP8: gemma.cpp's 8-bit switched floating point (see docs/formats.md).
#pragma once

#include <cstdint>

namespace qlm {

// Value of a code in [-1.875, 1.875]; 0x80 (reserved) decodes to 0.
float Sfp8Decode(uint8_t code);
// Nearest code (ties to even) for v, which the caller has scaled so that
// |v| <= 1.875; larger magnitudes saturate, NaN encodes as 0.
uint8_t Sfp8Encode(float v);
// out[i] = Sfp8Encode(in[i] / scale) for i < n (vectorizable loop).
void Sfp8EncodeScaled(const float* in, uint64_t n, float scale, uint8_t* out);

}  // namespace qlm
