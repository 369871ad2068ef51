// Scalar reference element-wise, normalisation, RoPE and attention kernels.
#pragma once

#include "kernels/registry.h"

namespace qlm::kernels {

// Fills every non-matmul entry with the scalar references.
void FillScalarOps(KernelTable& t);

}  // namespace qlm::kernels
