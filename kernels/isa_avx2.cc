// The AVX2 table (AVX2 + FMA + F16C): xsimd templates instantiated for
// fma3<avx2>. This file alone is compiled with those ISA flags.
#include <xsimd/xsimd.hpp>

#include "kernels/isa_tables.h"
#include "kernels/simd/matmul-inl.h"
#include "kernels/simd/ops-inl.h"

namespace qlm::kernels {

void FillAvx2Table(KernelTable& t) {
  using Arch = xsimd::fma3<xsimd::avx2>;
  simd::FillMatmul<Arch>(t);
  simd::FillOps<Arch>(t);
}

void FillAvx2NtaLongRows(KernelTable& t) {
  simd::FillMatmulNtaLongRows<xsimd::fma3<xsimd::avx2>>(t);
}

}  // namespace qlm::kernels
