// Per-ISA table fillers, each defined in its own translation unit compiled
// with that ISA's flags (kernels/isa_*.cc). A filler overwrites the entries
// its ISA specialises and leaves the rest (the fallback) untouched; the
// registry records which ISA provided each entry.
#pragma once

#include "kernels/registry.h"

namespace qlm::kernels {

void FillScalarTable(KernelTable& t);  // every entry: the references
void FillAvx2Table(KernelTable& t);
void FillAvx512Table(KernelTable& t);
// f32/bf16 decode whose long rows prefetch non-temporally (applied on Zen 5
// only: see kPrefetchLocalityNta in kernels/simd/matmul-inl.h).
void FillAvx2NtaLongRows(KernelTable& t);
void FillAvx512NtaLongRows(KernelTable& t);
// f32 decode on 512-bit vectors (applied on Intel and AMD Zen 4: see
// FillMatmulFullWidthF32 in kernels/simd/matmul-inl.h).
void FillAvx512FullWidthF32(KernelTable& t);
void FillAvx512VnniTable(KernelTable& t);  // VNNI entries only (int8/q4 matmul_q8)
// The q4 VNNI decode prefetching non-temporally (applied on Zen 5 only).
void FillAvx512VnniNtaTable(KernelTable& t);
void FillAvx512VnniI16Table(KernelTable& t);  // VNNI int8 prefill (replaces the int8 entry)
void FillAvx512VbmiTable(KernelTable& t);     // VBMI entries only (sfp8 matmul)
// BF16 + VBMI: sfp8 decode through vdpbf16ps (applied after the VBMI fill),
// prefetching into L2, or non-temporally (Zen 5).
void FillAvx512Bf16Table(KernelTable& t);
void FillAvx512Bf16NtaTable(KernelTable& t);
void FillNeonTable(KernelTable& t);

}  // namespace qlm::kernels
