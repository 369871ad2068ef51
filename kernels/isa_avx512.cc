// The AVX-512 table (F, BW, DQ, VL): xsimd templates instantiated for
// avx512bw. This file alone is compiled with those ISA flags; VNNI and BF16
// entries live in isa_avx512_vnni.cc and are patched in only when present.

// GCC 12 false positive: AVX-512 intrinsics built on _mm512_undefined_ps()
// (`__m512 __Y = __Y;`) trip -W(maybe-)uninitialized once inlined.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <xsimd/xsimd.hpp>

#include "kernels/isa_tables.h"
#include "kernels/simd/matmul-inl.h"
#include "kernels/simd/ops-inl.h"

namespace qlm::kernels {

void FillAvx512Table(KernelTable& t) {
  using Arch = xsimd::avx512bw;
  simd::FillMatmul<Arch>(t);
  simd::FillOps<Arch>(t);
}

void FillAvx512NtaLongRows(KernelTable& t) { simd::FillMatmulNtaLongRows<xsimd::avx512bw>(t); }

void FillAvx512FullWidthF32(KernelTable& t) { simd::FillMatmulFullWidthF32<xsimd::avx512bw>(t); }

}  // namespace qlm::kernels
