// The GPTQ solver (Frantar et al., "GPTQ: Accurate Post-Training
// Quantization for Generative Pre-trained Transformers", 2022): quantizes a
// linear weight W [rows = N out, cols = K in] to qlm's q4 or sfp8 so that
// the OUTPUT error ‖(W − Ŵ)·X‖² over calibration inputs X is small, not just
// ‖W − Ŵ‖².
//
//   H = 2/n · Σ x xᵀ over the n calibration inputs of the linear    (K × K)
//   dead inputs (H_ii = 0) are zeroed; with act-order, inputs are visited
//   in order of decreasing H_ii (q4 stores them in that order: its perm)
//   H += λ·I, λ = damp · mean(diag H)
//   U = upper Cholesky factor of H⁻¹ (H⁻¹ = UᵀU)
//   for each block of 128 columns, for each column i in it:
//     q_i = quantize(w_i); err = (w_i − ŵ_i) / U_ii
//     w_j −= err · U_ij for the rest of the block (j > i)
//   then the whole block's errors update every later column at once (the
//   "lazy batch" update: one [N × 128] · [128 × rest] product).
// Rows are independent given U, so the work splits over rows across threads.
//
// The per-column quantizer ("quantize(w_i)") is the format's own rule:
//   q4:   at a group start, scale and zero point of the group from the
//         current (already error-compensated) weights by docs/formats.md's
//         q4 rule (or the clip search);
//   sfp8: the tensor scale max|w|/1.875 is fixed up front from the ORIGINAL
//         weights (Sfp8TensorScale); each code is Sfp8Encode(w_i / scale),
//         which saturates at ±1.875 if compensation pushed w_i past max|w|.
// Either way, with H = I nothing propagates and the result is bit-identical
// to round-to-nearest (quant/quantize.h; tested).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/registry.h"
#include "quant/format.h"

namespace qlm {

class ThreadPool;

struct GptqOptions {
  Format format = Format::kQ4;                // q4 or sfp8
  uint32_t group_size = kQ4DefaultGroupSize;  // q4: 32, 64 or 128 (sfp8: ignored)
  bool asymmetric = true;                     // q4 only
  bool act_order = false;
  double damp = 0.01;         // fraction of mean(diag H) added to the diagonal
  uint32_t block_size = 128;  // columns per lazy-update block
  // GPTQ's optional "mse" scale search: per group, shrink the min/max range
  // (factors 1 .. 0.21) to minimise Σ|w − ŵ|^2.4 instead of using qlm's
  // plain min/max rule. q4 only.
  bool clip_search = false;
  // After GPTQ, up to this many coordinate-descent sweeps per row on the
  // proxy loss (w − ŵ)ᵀH(w − ŵ): each column is re-rounded (on its fixed
  // grid: q4 group parameters, sfp8 tensor scale) to the value nearest
  // ŵ_i + [H(w − ŵ)]_i / H_ii when that lowers the loss. 0 = plain GPTQ.
  // A diagonal H leaves round-to-nearest unchanged.
  uint32_t refine_passes = 0;
};

struct GptqStats {
  double damp_used = 0;  // λ actually added (raised if H was not positive definite)
  size_t dead_inputs = 0;
  // Σ over weights of (w − ŵ)² / U_ii², GPTQ's own loss estimate (before
  // any refinement).
  double loss = 0;
  size_t refined = 0;  // codes changed by the refinement sweeps
};

// Accumulates H = 2/n · Σ x xᵀ for one linear input of width k, batch by
// batch, with the kernel table's f32 matmul (Xᵀ·X as a matmul of the
// transposed batch with itself), split over `pool` if given.
class HessianAccumulator {
 public:
  explicit HessianAccumulator(size_t k);
  // Adds the m rows of x [m, k].
  void Add(const float* x, size_t m, const kernels::KernelTable& table, ThreadPool* pool);
  size_t k() const { return k_; }
  size_t samples() const { return n_; }
  // 2/n · Σ x xᵀ, row-major [k, k]. Throws if nothing was added.
  std::vector<float> Hessian() const;

 private:
  size_t k_;
  size_t n_ = 0;
  std::vector<double> sum_;  // Σ x xᵀ
  AlignedBuffer xt_;         // [k, m] transposed batch
  std::vector<float> prod_;  // [k, k] one batch's product
};

// Quantizes w [rows, cols] (row-major f32, original input order) with the
// Hessian h [cols, cols] into options.format (q4, with the act-order perm
// if any; sfp8, always in original input order). Throws qlm::Error for bad
// options (another format, clip search on sfp8, ...) or an H that stays
// indefinite after raising the damping.
QuantizedTensor GptqQuantize(const float* w, size_t rows, size_t cols, const float* h,
                             const GptqOptions& options, ThreadPool* pool,
                             GptqStats* stats = nullptr);

}  // namespace qlm
