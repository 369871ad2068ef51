// Placeholder until the scalar matmul references land.
#include "kernels/scalar/matmul.h"

namespace qlm::kernels {

void FillScalarMatmul(KernelTable&) {}

}  // namespace qlm::kernels
