// Scalar reference matmul kernels (every weight format, f32 and int8
// activations): the ground truth every SIMD table is tested against.
//
// They decode each weight row once (into per-thread scratch) and apply it to
// every row of x, accumulating in double, so they are slow but simple enough
// to check by eye.
#pragma once

#include <cstddef>

#include "kernels/registry.h"

namespace qlm::kernels {

// Fills matmul[], quantize_acts and matmul_q8[] with the scalar references.
void FillScalarMatmul(KernelTable& t);

// Argument checks shared by every matmul implementation (cheap, once per
// call): throw qlm::Error naming what is wrong, so a bad call never reads out
// of bounds. `expected` is the format the entry was registered for.
void CheckMatmulArgs(const QTensor& w, Format expected, size_t n_begin, size_t n_end);
// Also checks that x.block is valid and tiles the weight's groups.
void CheckMatmulQ8Args(const QTensor& w, Format expected, const Q8Acts& x, size_t n_begin,
                       size_t n_end);
// Throws unless block is kQ8ActBlock or kQ8ActBlockWide.
void CheckQ8ActBlock(size_t block);

// The per-block int8 quantization of one activation value, shared by every
// quantize_acts so all tables produce the same codes: with amax the block's
// max |x|, scale = amax / 127 and q = nearest-even(x · (1 / scale)). A block
// whose scale would be subnormal (amax < 1.5e-36) quantizes to zeros rather
// than overflowing 1 / scale.
inline float Q8Scale(float amax) { return amax / 127.0f; }
inline float Q8InvScale(float scale) { return scale >= 0x1p-126f ? 1.0f / scale : 0.0f; }

}  // namespace qlm::kernels
