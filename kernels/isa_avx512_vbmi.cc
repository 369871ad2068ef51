// AVX-512 VBMI entries of the avx512 table: the SFP8 matmul with its
// byte-permute decoder (vpermi2b; see the SFP8 Decoder in
// simd/matmul-inl.h). This file alone is compiled with -mavx512vbmi; the
// registry patches its entries into the avx512 table only when the CPU
// reports VBMI (Ice Lake+, Zen 4).

// GCC 12 false positive: AVX-512 intrinsics built on _mm512_undefined_ps()
// (`__m512 __Y = __Y;`) trip -W(maybe-)uninitialized once inlined.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <xsimd/xsimd.hpp>

#include "kernels/isa_tables.h"
#include "kernels/simd/matmul-inl.h"

namespace qlm::kernels {

void FillAvx512VbmiTable(KernelTable& t) {
  t.matmul[static_cast<int>(Format::kSFP8)] =
      simd::mm::Matmul<simd::mm::avx512_vbmi, Format::kSFP8>;
}

}  // namespace qlm::kernels
