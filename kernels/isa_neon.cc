// The NEON table (aarch64 Advanced SIMD): xsimd templates instantiated for
// neon64.
#include <xsimd/xsimd.hpp>

#include "kernels/isa_tables.h"
#include "kernels/simd/matmul-inl.h"
#include "kernels/simd/ops-inl.h"

namespace qlm::kernels {

void FillNeonTable(KernelTable& t) {
  using Arch = xsimd::neon64;
  simd::FillMatmul<Arch>(t);
  simd::FillOps<Arch>(t);
}

}  // namespace qlm::kernels
