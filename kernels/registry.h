// The kernel registry: one plain table of function pointers per ISA. The
// engine picks a table once at load time; the transformer graph calls kernels
// only through it. Kernels know nothing of models: they see raw pointers,
// sizes and QTensor views.
//
// Conventions for every op:
//  * Row-major f32 activations, no alignment requirement on pointers.
//  * Output ranges [n_begin, n_end) / [head_begin, head_end) let a thread pool
//    split work by contiguous ranges; calls on disjoint ranges may run
//    concurrently (kernels keep per-thread scratch only).
//  * Odd sizes are legal everywhere (K not a multiple of the vector width or
//    of the group, N = 1, M = 1).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "quant/format.h"

namespace qlm::kernels {

enum class Isa : uint8_t { kScalar = 0, kAvx2 = 1, kAvx512 = 2, kNeon = 3 };
inline constexpr int kNumIsas = 4;
const char* IsaName(Isa isa);  // "scalar", "avx2", "avx512", "neon"

// Activations quantized to int8 for the integer-dot-product matmul path:
// symmetric, one scale per block of `block` inputs along K (K padded to a
// multiple of 64 with zeros so both the int8 (32) and q4 (64) weight layouts
// can consume it). Blocks are 32 inputs, or 64 for q4 weights whose groups
// are 64 or 128 inputs (see Q8ActBlockFor).
inline constexpr size_t kQ8ActBlock = 32;
inline constexpr size_t kQ8ActBlockWide = 64;
struct Q8Acts {
  const int8_t* q = nullptr;      // [m, k_padded]
  const float* scales = nullptr;  // [m, k_padded / block]: x ≈ scale · q
  const int32_t* sums = nullptr;  // [m, k_padded / block]: Σ q over the block
  size_t m = 0;
  size_t k = 0;                // logical K
  size_t k_padded = 0;         // K rounded up to a multiple of 64
  size_t block = kQ8ActBlock;  // kQ8ActBlock or kQ8ActBlockWide
};
// The 32-input half h of an activation row lies in act block
// h >> Q8ActHalfShift(x) (kernels that walk 32-input halves).
inline unsigned Q8ActHalfShift(const Q8Acts& x) { return x.block == kQ8ActBlockWide ? 1 : 0; }

// The activation block the int8-activation path uses for weight `w` and m
// activation rows. Prefill (m > 1) of q4 weights with groups of 64 or 128
// takes 64-input blocks: a 64-byte weight load then meets one activation
// scale in its low and its high nibbles, so the VNNI kernel sums both
// nibbles' dot products in int32 before one conversion to float (2
// vpdpbusd + 1 cvt + 2 FP ops per 128 inputs instead of 2 + 2 + 3), ~25 %
// faster on Emerald Rapids (docs/benchmarks.md). Decode keeps blocks of 32:
// it is memory-bound, so the finer activation rounding costs nothing there.
// Every table's matmul_q8 accepts both blocks.
size_t Q8ActBlockFor(const TensorDesc& w, size_t m);

// y[i, n] = Σ_k x[i, k] · W[n, k] for i < m and n_begin <= n < n_end.
// x: [m, K] in the ORIGINAL input order (the kernel applies w.perm).
// y: [m, N] row-major; only columns [n_begin, n_end) are written.
// For m > 1 kernels reuse each decoded weight block across rows (tiling).
// SFP8 weights multiply x rounded to bf16 (nearest, ties to even): every
// product is then exact in f32 (4-bit × 8-bit significands), and CPUs with
// AVX512_BF16 take two products per lane in one vdpbf16ps. The rounding
// (at most 2^-9 relative) is far below SFP8's own (up to 1/17 relative,
// 2.6 % RMS on real weights; docs/formats.md).
using MatmulFn = void (*)(const QTensor& w, const float* x, size_t m, float* y, size_t n_begin,
                          size_t n_end);

// Quantizes x [m, k] into the Q8Acts buffers (sized by the caller from
// Q8ActsQuantBytes / Q8ActsBlockCount), one scale and sum per `block`
// inputs (kQ8ActBlock or kQ8ActBlockWide; anything else throws). perm
// (nullable, k entries) gathers x[perm[j]] first, so the result matches a
// weight stored with that permutation.
using QuantizeActsFn = void (*)(const float* x, size_t m, size_t k, const int32_t* perm,
                                size_t block, int8_t* q, float* scales, int32_t* sums);

// Same contract as MatmulFn with int8 activations; only int8 and q4 weights.
using MatmulQ8Fn = void (*)(const QTensor& w, const Q8Acts& x, float* y, size_t n_begin,
                            size_t n_end);

// Attention of a block of queries against a KV cache.
// Cache layout per layer: k/v[kv_head][slot][head_dim], head stride
// `capacity * head_dim`. slot_pos[s] is the absolute position held by slot s
// (-1 = empty), so ring buffers and shifted caches need no special casing.
// Query i (0 <= i < n_q) sits at absolute position q_pos0 + i and attends to
// slot s iff 0 <= slot_pos[s] <= q_pos0 + i and, when window > 0,
// q_pos0 + i - slot_pos[s] < window. Grouped-query: head h reads kv head
// h / (n_heads / n_kv_heads). score = scale · q·k, then if softcap > 0
// score = softcap · tanh(score / softcap); softmax; out = Σ p · v.
// Memory is O(n_slots) per call, not O(n_q · n_slots).
//
// KV storage formats (kv_type): kF32 reads `k`/`v` as floats. The others
// read `k_codes`/`v_codes`, rows of head_dim elements in the same
// [kv_head][slot] order, decoded on the fly:
//   kBF16: bf16 (quant/half.h), no scale;
//   kInt8: k = k_scale[kv_head · capacity + slot] · int8 code;
//   kSFP8: k = k_scale[...] · Sfp8Decode(code) (quant/sfp8.h).
// (Likewise v with v_scale.) One scale per (kv head, slot) row.
enum class KvType : uint8_t { kF32 = 0, kBF16 = 1, kInt8 = 2, kSFP8 = 3 };
inline constexpr int kNumKvTypes = 4;
const char* KvTypeName(KvType t);  // "f32", "bf16", "int8", "sfp8"
// Bytes of one element (code) of a K or V row.
inline constexpr size_t KvElemBytes(KvType t) {
  return t == KvType::kF32 ? 4 : t == KvType::kBF16 ? 2 : 1;
}
inline constexpr bool KvHasScale(KvType t) { return t == KvType::kInt8 || t == KvType::kSFP8; }

struct AttentionArgs {
  const float* q = nullptr;  // [n_q, n_heads, head_dim]
  float* out = nullptr;      // [n_q, n_heads, head_dim]
  const float* k = nullptr;
  const float* v = nullptr;
  const int32_t* slot_pos = nullptr;
  size_t n_slots = 0;   // slots to scan (<= capacity)
  size_t capacity = 0;  // slots per kv head (head stride / head_dim)
  size_t n_q = 0, n_heads = 0, n_kv_heads = 0, head_dim = 0;
  int32_t q_pos0 = 0;
  float scale = 1.0f;
  float softcap = 0.0f;                 // <= 0: none
  int32_t window = 0;                   // <= 0: none
  size_t head_begin = 0, head_end = 0;  // query heads to compute
  // Quantized KV cache (see KvType above); unused for kF32.
  KvType kv_type = KvType::kF32;
  const uint8_t* k_codes = nullptr;  // [kv_heads][capacity][head_dim · KvElemBytes]
  const uint8_t* v_codes = nullptr;
  const float* k_scale = nullptr;  // [kv_heads][capacity] (int8, sfp8)
  const float* v_scale = nullptr;
};
using AttentionFn = void (*)(const AttentionArgs& args);

// y = x / sqrt(mean(x²) + eps) · (add_one ? 1 + w : w), per row of `dim`.
// y may alias x.
using RmsNormFn = void (*)(const float* x, const float* w, float* y, size_t n_rows, size_t dim,
                           float eps, bool add_one);

// Rotate-half RoPE (Hugging Face / NeoX layout) in place:
// x[t * token_stride + h * head_dim + d], cos/sin tables [n_tokens, head_dim/2].
using RopeFn = void (*)(float* x, size_t n_tokens, size_t n_heads, size_t head_dim,
                        size_t token_stride, const float* cos, const float* sin);

// out[i] = act(gate[i]) · up[i]: GeGLU uses tanh-approximate GELU, SwiGLU SiLU.
using GluFn = void (*)(const float* gate, const float* up, float* out, size_t n);
using SoftmaxFn = void (*)(float* x, size_t n);  // in place, numerically stable
using AddFn = void (*)(const float* a, const float* b, float* out, size_t n);
using ScaleFn = void (*)(float* x, float s, size_t n);
using SoftcapFn = void (*)(float* x, float cap, size_t n);  // x = cap · tanh(x / cap)
using ArgmaxFn = size_t (*)(const float* x, size_t n);      // first index of the max
// Σ of the 64-bit words of [p, p + bytes) (wrapping; bytes a multiple of 8,
// p 8-byte aligned): a pure read stream with the table's widest loads. The
// memory-bandwidth probes time it; nothing else needs it.
using ReadSumFn = uint64_t (*)(const void* p, size_t bytes);

// Every op of a table, for bookkeeping (which ISA provided each entry).
enum class Op : uint8_t {
  kMatmulF32,
  kMatmulBF16,
  kMatmulInt8,
  kMatmulQ4,
  kMatmulSFP8,
  kQuantizeActs,
  kMatmulQ8Int8,
  kMatmulQ8Q4,
  kAttention,
  kRmsNorm,
  kRope,
  kGeglu,
  kSwiglu,
  kSoftmax,
  kAdd,
  kScale,
  kSoftcap,
  kArgmax,
  kReadSum,
  kCount
};
inline constexpr int kNumOps = static_cast<int>(Op::kCount);
const char* OpName(Op op);

struct KernelTable {
  Isa isa = Isa::kScalar;
  MatmulFn matmul[kNumFormats] = {};  // indexed by Format
  QuantizeActsFn quantize_acts = nullptr;
  MatmulQ8Fn matmul_q8[kNumFormats] = {};  // int8 and q4 only; others null
  AttentionFn attention = nullptr;
  RmsNormFn rmsnorm = nullptr;
  RopeFn rope = nullptr;
  GluFn geglu = nullptr;
  GluFn swiglu = nullptr;
  SoftmaxFn softmax = nullptr;
  AddFn add = nullptr;
  ScaleFn scale = nullptr;
  SoftcapFn softcap = nullptr;
  ArgmaxFn argmax = nullptr;
  ReadSumFn read_sum = nullptr;
  // provider[op] = the ISA whose implementation fills that entry (a table
  // falls back to a lower ISA for ops it does not specialise).
  Isa provider[kNumOps] = {};
};

// The entry of `t` that implements `op`, as an opaque pointer (null if the
// table has none): for bookkeeping and `qlm info`, never for calling.
const void* OpEntry(const KernelTable& t, Op op);

// Bytes needed for the Q8Acts buffers of an [m, k] activation.
size_t Q8ActsQuantBytes(size_t m, size_t k);  // int8 codes
size_t Q8ActsBlockCount(size_t m,
                        size_t k);  // entries of scales and of sums (enough for any block)

// Tables compiled into this binary for this processor family (x86-64:
// scalar, avx2, avx512; aarch64: scalar, neon).
bool IsaCompiledIn(Isa isa);
// Compiled in AND supported by the running CPU.
bool IsaAvailable(Isa isa);
// The best available ISA.
Isa BestIsa();
// The table for `isa`; throws qlm::UsageError naming the ISA and the CPU's
// features if it is not available here.
const KernelTable& GetTable(Isa isa);
// GetTable(isa) with the entries whose decode prefetches non-temporally, as
// Zen 5 gets them by default, whatever the CPU: f32/bf16 (long rows only)
// and the q4 matmul_q8 (VNNI), for tests and A/B runs of that choice. Null
// entries where isa has no such variant (scalar, neon; matmul_q8 without
// VNNI); throws as GetTable does. (Zen 5's sfp8 vdpbf16ps decode differs
// from the other CPUs' only in its prefetch too; it is not here.)
KernelTable TableWithNtaPrefetch(Isa isa);
// GetTable(isa) with the f32 entry whose decode runs on 512-bit vectors, as
// Intel CPUs get it by default, whatever the CPU: for tests and A/B runs.
// A null f32 entry if isa has no such variant (all but avx512).
KernelTable TableWithFullWidthF32(Isa isa);
// GetTable(isa) with the sfp8 entry that decodes to f32 and multiplies with
// FMAs, as CPUs without AVX512_BF16 get it: for tests and A/B runs. A null
// sfp8 entry if GetTable(isa) has no other one (all but avx512 on a CPU
// with AVX512_BF16 and VBMI).
KernelTable TableWithF32Sfp8Decode(Isa isa);
// Picks the table: `request` ("scalar", "avx2", "avx512", "neon"; empty =
// the QLM_KERNELS environment variable, else BestIsa()). Throws
// qlm::UsageError for an unknown name or an ISA the CPU lacks.
const KernelTable& SelectTable(std::string_view request = {});
// Human-readable CPU feature list relevant to the tables, e.g.
// "avx2 fma f16c avx512f avx512bw avx512dq avx512vl avx512_vnni avx512_bf16".
std::string CpuFeatureString();

}  // namespace qlm::kernels
