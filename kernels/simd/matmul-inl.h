// Placeholder until the SIMD matmul kernels land: fills nothing.
#pragma once

#include "kernels/registry.h"

namespace qlm::kernels::simd {

template <class Arch>
void FillMatmul(KernelTable&) {}

}  // namespace qlm::kernels::simd
