// The GPTQ solver (Frantar et al., "GPTQ: Accurate Post-Training
// Quantization for Generative Pre-trained Transformers", 2022): quantizes a
// linear weight W [rows = N out, cols = K in] to qlm's q4 so that the OUTPUT
// error ‖(W − Ŵ)·X‖² over calibration inputs X is small, not just ‖W − Ŵ‖².
//
//   H = 2/n · Σ x xᵀ over the n calibration inputs of the linear    (K × K)
//   dead inputs (H_ii = 0) are zeroed; with act-order, inputs are visited
//   in order of decreasing H_ii (and stored in that order: the q4 perm)
//   H += λ·I, λ = damp · mean(diag H)
//   U = upper Cholesky factor of H⁻¹ (H⁻¹ = UᵀU)
//   for each block of 128 columns, for each column i in it:
//     at a group start: scale and zero point of the group from the current
//       (already error-compensated) weights, by qlm's q4 rule
//     q_i = quantize(w_i); err = (w_i − ŵ_i) / U_ii
//     w_j −= err · U_ij for the rest of the block (j > i)
//   then the whole block's errors update every later column at once (the
//   "lazy batch" update: one [N × 128] · [128 × rest] product).
// Rows are independent given U, so the work splits over rows across threads.
// Scales and zero points follow docs/formats.md's q4 rule exactly, so with
// H = I the result is bit-identical to round-to-nearest (tested).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/registry.h"
#include "quant/format.h"

namespace qlm {

class ThreadPool;

struct GptqOptions {
  uint32_t group_size = kQ4DefaultGroupSize;  // 32, 64 or 128
  bool asymmetric = true;
  bool act_order = false;
  double damp = 0.01;         // fraction of mean(diag H) added to the diagonal
  uint32_t block_size = 128;  // columns per lazy-update block
  // GPTQ's optional "mse" scale search: per group, shrink the min/max range
  // (factors 1 .. 0.21) to minimise Σ|w − ŵ|^2.4 instead of using qlm's
  // plain min/max rule.
  bool clip_search = false;
};

struct GptqStats {
  double damp_used = 0;  // λ actually added (raised if H was not positive definite)
  size_t dead_inputs = 0;
  // Σ over weights of (w − ŵ)² / U_ii², GPTQ's own loss estimate.
  double loss = 0;
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
// Hessian h [cols, cols]. Throws qlm::Error for bad options or an H that
// stays indefinite after raising the damping.
QuantizedTensor GptqQuantize(const float* w, size_t rows, size_t cols, const float* h,
                             const GptqOptions& options, ThreadPool* pool,
                             GptqStats* stats = nullptr);

}  // namespace qlm
