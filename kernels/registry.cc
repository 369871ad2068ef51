// The kernel registry: CPU feature detection, one table per ISA built once
// (fallback chain scalar → avx2 → avx512, scalar → neon) and table selection.
// This file is compiled without ISA flags; it only calls the per-ISA fillers
// that were compiled in (QLM_HAVE_* from kernels/CMakeLists.txt) and only
// after checking that the running CPU supports them.
#include <cstdlib>
#include <string>

#include "base/error.h"
#include "kernels/isa_tables.h"
#include "kernels/registry.h"
#include "kernels/scalar/matmul.h"
#include "kernels/scalar/ops.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#define QLM_X86 1
#endif

namespace qlm::kernels {

void FillScalarTable(KernelTable& t) {
  FillScalarMatmul(t);
  FillScalarOps(t);
}

namespace {

struct CpuFeatures {
  bool avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512dq = false, avx512vl = false;
  bool avx512_vnni = false, avx512_bf16 = false, avx512_vbmi = false;
  bool neon = false;
  // AMD family 1Ah (Zen 5): its f32/bf16 long-row, q4 and sfp8 decode
  // prefetch non-temporally, which halved f32/bf16 on Intel
  // (FillAvx2NtaLongRows, FillAvx512VnniNtaTable, FillAvx512Bf16NtaTable).
  bool amd_zen5 = false;
  // Intel: its f32 decode streams faster on 512-bit vectors
  // (FillAvx512FullWidthF32).
  bool intel = false;
  // AMD family 19h (Zen 3 and Zen 4; only Zen 4 has the AVX-512 table these
  // flags patch): its f32 decode is faster on 512-bit vectors too since
  // session 16 (FillAvx512FullWidthF32).
  bool amd_zen4 = false;
};

#ifdef QLM_X86
// XCR0 via xgetbv, in inline asm so this file needs no -mxsave.
uint64_t ReadXcr0() {
  uint32_t eax = 0, edx = 0;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<uint64_t>(edx) << 32) | eax;
}
#endif

CpuFeatures DetectCpu() {
  CpuFeatures f;
#ifdef QLM_X86
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(0, &a, &b, &c, &d)) return f;
  const bool amd = b == 0x68747541 && d == 0x69746e65 && c == 0x444d4163;  // "AuthenticAMD"
  f.intel = b == 0x756e6547 && d == 0x49656e69 && c == 0x6c65746e;         // "GenuineIntel"
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  // Family = base family (bits 8-11) + extended family (bits 20-27) when
  // the base is 0xF.
  const unsigned base_family = (a >> 8) & 0xF;
  const unsigned family = base_family == 0xF ? base_family + ((a >> 20) & 0xFF) : base_family;
  f.amd_zen5 = amd && family == 0x1A;
  f.amd_zen4 = amd && family == 0x19;
  const bool osxsave = (c >> 27) & 1;
  const bool avx = (c >> 28) & 1;
  const bool fma = (c >> 12) & 1;
  const bool f16c = (c >> 29) & 1;
  // The OS must save the YMM (XCR0 bits 1, 2) and, for AVX-512, the opmask
  // and ZMM state (bits 5, 6, 7) on context switches.
  const uint64_t xcr0 = osxsave ? ReadXcr0() : 0;
  const bool os_avx = (xcr0 & 0x6) == 0x6;
  const bool os_avx512 = os_avx && (xcr0 & 0xE0) == 0xE0;
  if (!avx || !os_avx) return f;
  f.fma = fma;
  f.f16c = f16c;
  if (__get_cpuid_max(0, nullptr) < 7) return f;
  __cpuid_count(7, 0, a, b, c, d);
  f.avx2 = (b >> 5) & 1;
  if (os_avx512) {
    f.avx512f = (b >> 16) & 1;
    f.avx512dq = (b >> 17) & 1;
    f.avx512bw = (b >> 30) & 1;
    f.avx512vl = (b >> 31) & 1;
    f.avx512_vbmi = (c >> 1) & 1;
    f.avx512_vnni = (c >> 11) & 1;
    const unsigned max_subleaf = a;
    if (max_subleaf >= 1) {
      __cpuid_count(7, 1, a, b, c, d);
      f.avx512_bf16 = (a >> 5) & 1;
    }
  }
#elif defined(__aarch64__)
  f.neon = true;  // Advanced SIMD is baseline on aarch64.
#endif
  return f;
}

const CpuFeatures& Cpu() {
  static const CpuFeatures f = DetectCpu();
  return f;
}

bool CpuSupports(Isa isa) {
  const CpuFeatures& f = Cpu();
  switch (isa) {
    case Isa::kScalar:
      return true;
    case Isa::kAvx2:
      return f.avx2 && f.fma && f.f16c;
    case Isa::kAvx512:
      return f.avx2 && f.fma && f.f16c && f.avx512f && f.avx512bw && f.avx512dq && f.avx512vl;
    case Isa::kNeon:
      return f.neon;
  }
  return false;
}

// Applies `fill` to `t`; every entry it changed is recorded as provided by
// `isa`.
void ApplyFill(KernelTable& t, void (*fill)(KernelTable&), Isa isa) {
  const void* before[kNumOps];
  for (int i = 0; i < kNumOps; ++i) before[i] = OpEntry(t, static_cast<Op>(i));
  fill(t);
  for (int i = 0; i < kNumOps; ++i) {
    if (OpEntry(t, static_cast<Op>(i)) != before[i]) t.provider[i] = isa;
  }
}

KernelTable BuildScalar() {
  KernelTable t;
  for (Isa& p : t.provider) p = Isa::kScalar;
  FillScalarTable(t);
  t.isa = Isa::kScalar;
  return t;
}

// Tables are built on first use (function-local statics: thread-safe, once).
const KernelTable& ScalarTable() {
  static const KernelTable t = BuildScalar();
  return t;
}

#ifdef QLM_HAVE_AVX2
const KernelTable& Avx2Table() {
  static const KernelTable t = [] {
    KernelTable t = ScalarTable();
    ApplyFill(t, FillAvx2Table, Isa::kAvx2);
    if (Cpu().amd_zen5) ApplyFill(t, FillAvx2NtaLongRows, Isa::kAvx2);
    t.isa = Isa::kAvx2;
    return t;
  }();
  return t;
}
#endif

#ifdef QLM_HAVE_AVX512
// The avx512 table's sfp8 entry before FillAvx512Bf16Table replaced it (null
// if it did not): TableWithF32Sfp8Decode.
MatmulFn g_avx512_f32_sfp8 = nullptr;

const KernelTable& Avx512Table() {
  static const KernelTable t = [] {
#ifdef QLM_HAVE_AVX2
    KernelTable t = Avx2Table();
#else
    KernelTable t = ScalarTable();
#endif
    ApplyFill(t, FillAvx512Table, Isa::kAvx512);
    if (Cpu().amd_zen5) ApplyFill(t, FillAvx512NtaLongRows, Isa::kAvx512);
    if (Cpu().intel || Cpu().amd_zen4) ApplyFill(t, FillAvx512FullWidthF32, Isa::kAvx512);
#ifdef QLM_HAVE_AVX512_VNNI
    if (Cpu().avx512_vnni) {
      ApplyFill(t, FillAvx512VnniTable, Isa::kAvx512);
      if (Cpu().amd_zen5) ApplyFill(t, FillAvx512VnniNtaTable, Isa::kAvx512);
    }
#endif
#ifdef QLM_HAVE_AVX512_VNNI_I16
    if (Cpu().avx512_vnni) ApplyFill(t, FillAvx512VnniI16Table, Isa::kAvx512);
#endif
#ifdef QLM_HAVE_AVX512_VBMI
    if (Cpu().avx512_vbmi) ApplyFill(t, FillAvx512VbmiTable, Isa::kAvx512);
#endif
#ifdef QLM_HAVE_AVX512_BF16
    if (Cpu().avx512_vbmi && Cpu().avx512_bf16) {
      g_avx512_f32_sfp8 = t.matmul[static_cast<int>(Format::kSFP8)];
      ApplyFill(t, Cpu().amd_zen5 ? FillAvx512Bf16NtaTable : FillAvx512Bf16Table, Isa::kAvx512);
    }
#endif
    t.isa = Isa::kAvx512;
    return t;
  }();
  return t;
}
#endif

#ifdef QLM_HAVE_NEON
const KernelTable& NeonTable() {
  static const KernelTable t = [] {
    KernelTable t = ScalarTable();
    ApplyFill(t, FillNeonTable, Isa::kNeon);
    t.isa = Isa::kNeon;
    return t;
  }();
  return t;
}
#endif

std::string AvailableList() {
  std::string s;
  for (int i = 0; i < kNumIsas; ++i) {
    const Isa isa = static_cast<Isa>(i);
    if (!IsaAvailable(isa)) continue;
    if (!s.empty()) s += ", ";
    s += IsaName(isa);
  }
  return s;
}

std::string NotAvailableMessage(Isa isa) {
  std::string msg = std::string("kernel table '") + IsaName(isa) + "' is not available: ";
  if (!IsaCompiledIn(isa)) {
    msg += "it is not compiled into this binary (built for another processor family)";
  } else {
    msg += "this CPU lacks the instructions it needs";
  }
  const std::string features = CpuFeatureString();
  msg += "; CPU features: " + (features.empty() ? std::string("(none relevant)") : features);
  msg += "; available tables: " + AvailableList();
  return msg;
}

}  // namespace

bool IsaCompiledIn(Isa isa) {
  switch (isa) {
    case Isa::kScalar:
      return true;
    case Isa::kAvx2:
#ifdef QLM_HAVE_AVX2
      return true;
#else
      return false;
#endif
    case Isa::kAvx512:
#ifdef QLM_HAVE_AVX512
      return true;
#else
      return false;
#endif
    case Isa::kNeon:
#ifdef QLM_HAVE_NEON
      return true;
#else
      return false;
#endif
  }
  return false;
}

bool IsaAvailable(Isa isa) { return IsaCompiledIn(isa) && CpuSupports(isa); }

Isa BestIsa() {
  for (Isa isa : {Isa::kAvx512, Isa::kAvx2, Isa::kNeon}) {
    if (IsaAvailable(isa)) return isa;
  }
  return Isa::kScalar;
}

const KernelTable& GetTable(Isa isa) {
  if (!IsaAvailable(isa)) throw UsageError(NotAvailableMessage(isa));
  switch (isa) {
    case Isa::kScalar:
      return ScalarTable();
    case Isa::kAvx2:
#ifdef QLM_HAVE_AVX2
      return Avx2Table();
#else
      break;
#endif
    case Isa::kAvx512:
#ifdef QLM_HAVE_AVX512
      return Avx512Table();
#else
      break;
#endif
    case Isa::kNeon:
#ifdef QLM_HAVE_NEON
      return NeonTable();
#else
      break;
#endif
  }
  throw UsageError(NotAvailableMessage(isa));
}

KernelTable TableWithNtaPrefetch(Isa isa) {
  KernelTable t = GetTable(isa);
  t.matmul[static_cast<int>(Format::kF32)] = nullptr;
  t.matmul[static_cast<int>(Format::kBF16)] = nullptr;
  t.matmul_q8[static_cast<int>(Format::kQ4)] = nullptr;
#ifdef QLM_HAVE_AVX2
  if (isa == Isa::kAvx2) FillAvx2NtaLongRows(t);
#endif
#ifdef QLM_HAVE_AVX512
  if (isa == Isa::kAvx512) FillAvx512NtaLongRows(t);
#endif
#ifdef QLM_HAVE_AVX512_VNNI
  if (isa == Isa::kAvx512 && Cpu().avx512_vnni) FillAvx512VnniNtaTable(t);
#endif
  return t;
}

KernelTable TableWithFullWidthF32(Isa isa) {
  KernelTable t = GetTable(isa);
  t.matmul[static_cast<int>(Format::kF32)] = nullptr;
#ifdef QLM_HAVE_AVX512
  if (isa == Isa::kAvx512) FillAvx512FullWidthF32(t);
#endif
  return t;
}

KernelTable TableWithF32Sfp8Decode(Isa isa) {
  KernelTable t = GetTable(isa);
  t.matmul[static_cast<int>(Format::kSFP8)] = nullptr;
#ifdef QLM_HAVE_AVX512
  if (isa == Isa::kAvx512) t.matmul[static_cast<int>(Format::kSFP8)] = g_avx512_f32_sfp8;
#endif
  return t;
}

const KernelTable& SelectTable(std::string_view request) {
  std::string_view name = request;
  std::string source = "--kernels";
  if (name.empty()) {
    const char* env = std::getenv("QLM_KERNELS");
    if (env == nullptr || *env == '\0') return GetTable(BestIsa());
    name = env;
    source = "QLM_KERNELS";
  }
  for (int i = 0; i < kNumIsas; ++i) {
    const Isa isa = static_cast<Isa>(i);
    if (name == IsaName(isa)) {
      if (!IsaAvailable(isa)) {
        throw UsageError(source + "=" + std::string(name) + ": " + NotAvailableMessage(isa));
      }
      return GetTable(isa);
    }
  }
  throw UsageError(source + "=" + std::string(name) +
                   ": unknown kernel table (expected scalar, avx2, avx512 or neon); CPU "
                   "features: " +
                   CpuFeatureString() + "; available tables: " + AvailableList());
}

std::string CpuFeatureString() {
  const CpuFeatures& f = Cpu();
  std::string s;
  auto add = [&s](bool has, const char* name) {
    if (!has) return;
    if (!s.empty()) s += ' ';
    s += name;
  };
  add(f.avx2, "avx2");
  add(f.fma, "fma");
  add(f.f16c, "f16c");
  add(f.avx512f, "avx512f");
  add(f.avx512bw, "avx512bw");
  add(f.avx512dq, "avx512dq");
  add(f.avx512vl, "avx512vl");
  add(f.avx512_vnni, "avx512_vnni");
  add(f.avx512_bf16, "avx512_bf16");
  add(f.avx512_vbmi, "avx512_vbmi");
  add(f.neon, "neon");
  add(f.amd_zen5, "zen5");
  add(f.intel, "intel");
  return s;
}

const void* OpEntry(const KernelTable& t, Op op) {
  switch (op) {
    case Op::kMatmulF32:
      return reinterpret_cast<const void*>(t.matmul[static_cast<int>(Format::kF32)]);
    case Op::kMatmulBF16:
      return reinterpret_cast<const void*>(t.matmul[static_cast<int>(Format::kBF16)]);
    case Op::kMatmulInt8:
      return reinterpret_cast<const void*>(t.matmul[static_cast<int>(Format::kInt8)]);
    case Op::kMatmulQ4:
      return reinterpret_cast<const void*>(t.matmul[static_cast<int>(Format::kQ4)]);
    case Op::kMatmulSFP8:
      return reinterpret_cast<const void*>(t.matmul[static_cast<int>(Format::kSFP8)]);
    case Op::kQuantizeActs:
      return reinterpret_cast<const void*>(t.quantize_acts);
    case Op::kMatmulQ8Int8:
      return reinterpret_cast<const void*>(t.matmul_q8[static_cast<int>(Format::kInt8)]);
    case Op::kMatmulQ8Q4:
      return reinterpret_cast<const void*>(t.matmul_q8[static_cast<int>(Format::kQ4)]);
    case Op::kAttention:
      return reinterpret_cast<const void*>(t.attention);
    case Op::kRmsNorm:
      return reinterpret_cast<const void*>(t.rmsnorm);
    case Op::kRope:
      return reinterpret_cast<const void*>(t.rope);
    case Op::kGeglu:
      return reinterpret_cast<const void*>(t.geglu);
    case Op::kSwiglu:
      return reinterpret_cast<const void*>(t.swiglu);
    case Op::kSoftmax:
      return reinterpret_cast<const void*>(t.softmax);
    case Op::kAdd:
      return reinterpret_cast<const void*>(t.add);
    case Op::kScale:
      return reinterpret_cast<const void*>(t.scale);
    case Op::kSoftcap:
      return reinterpret_cast<const void*>(t.softcap);
    case Op::kArgmax:
      return reinterpret_cast<const void*>(t.argmax);
    case Op::kReadSum:
      return reinterpret_cast<const void*>(t.read_sum);
    case Op::kCount:
      break;
  }
  return nullptr;
}

}  // namespace qlm::kernels
