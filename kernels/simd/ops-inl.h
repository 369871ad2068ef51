// Placeholder until the SIMD element-wise/attention kernels land: fills nothing.
#pragma once

#include "kernels/registry.h"

namespace qlm::kernels::simd {

template <class Arch>
void FillOps(KernelTable&) {}

}  // namespace qlm::kernels::simd
