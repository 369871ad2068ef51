// Scalar reference matmul kernels (every weight format, f32 and int8
// activations): the ground truth every SIMD table is tested against.
#pragma once

#include "kernels/registry.h"

namespace qlm::kernels {

// Fills matmul[], quantize_acts and matmul_q8[] with the scalar references.
void FillScalarMatmul(KernelTable& t);

}  // namespace qlm::kernels
