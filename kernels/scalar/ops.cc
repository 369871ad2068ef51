// Placeholder until the scalar op references land.
#include "kernels/scalar/ops.h"

namespace qlm::kernels {

void FillScalarOps(KernelTable&) {}

}  // namespace qlm::kernels
