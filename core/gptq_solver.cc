#include "core/gptq_solver.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <string>

#include "base/error.h"
#include "core/thread_pool.h"
#include "quant/half.h"
#include "quant/quantize.h"

namespace qlm {
namespace {

// Runs fn(begin, end) over [0, n), split over the pool when there is one.
template <class Fn>
void ParallelRanges(ThreadPool* pool, size_t n, size_t grain, Fn&& fn) {
  if (pool == nullptr) {
    if (n > 0) fn(size_t{0}, n);
    return;
  }
  pool->ParallelFor(n, grain, [&](size_t b, size_t e, size_t) { fn(b, e); });
}

// The smallest f16 >= x (x > 0), clamped to [2^-24, 65504]: qlm's q4 scale
// rule (docs/formats.md, "q4").
uint16_t F16AtLeast(float x) {
  if (!(x < 65504.0f)) return 0x7bff;
  uint16_t h = F32ToF16(x);
  if (F16ToF32(h) < x) ++h;
  return h == 0 ? uint16_t{1} : h;
}

struct GroupParams {
  uint16_t scale_bits;
  float scale;
  int zero;
};

inline int QuantizeCode(float w, const GroupParams& p) {
  const float q = std::nearbyint(w / p.scale) + static_cast<float>(p.zero);
  return static_cast<int>(std::clamp(q, 0.0f, 15.0f));
}

// The parameters for the range [lo, hi] (which holds 0), by qlm's rule.
GroupParams ParamsForRange(float lo, float hi, bool asymmetric) {
  if (lo == 0.0f && hi == 0.0f) {
    lo = -1.0f;
    hi = 1.0f;
  }
  const float raw = asymmetric ? (hi - lo) / 15.0f : 2.0f * std::max(-lo, hi) / 15.0f;
  GroupParams p;
  p.scale_bits = F16AtLeast(raw);
  p.scale = F16ToF32(p.scale_bits);
  p.zero =
      asymmetric ? static_cast<int>(std::clamp(std::nearbyint(-lo / p.scale), 0.0f, 15.0f)) : 8;
  return p;
}

// Scale and zero point of a group holding w[0..n) (the rest, padding, is 0):
// the range always holds 0 (docs/formats.md, "q4").
GroupParams FindParams(const float* w, size_t n, bool asymmetric) {
  float lo = 0.0f, hi = 0.0f;
  for (size_t i = 0; i < n; ++i) {
    lo = std::min(lo, w[i]);
    hi = std::max(hi, w[i]);
  }
  return ParamsForRange(lo, hi, asymmetric);
}

// GPTQ's optional "mse" quantizer: shrinks the range [lo, hi] by factors
// 1, 0.99, ..., 0.21 and keeps the one with the smallest Σ|w − ŵ|^2.4
// (clipping a few outliers buys a finer grid for the rest).
GroupParams ClipSearchParams(const float* w, size_t n, bool asymmetric) {
  float lo = 0.0f, hi = 0.0f;
  for (size_t i = 0; i < n; ++i) {
    lo = std::min(lo, w[i]);
    hi = std::max(hi, w[i]);
  }
  GroupParams best = ParamsForRange(lo, hi, asymmetric);
  if (n == 0 || (lo == 0.0f && hi == 0.0f)) return best;
  double best_err = INFINITY;
  for (int i = 0; i < 80; ++i) {
    const float shrink = 1.0f - static_cast<float>(i) / 100.0f;
    const GroupParams p = ParamsForRange(lo * shrink, hi * shrink, asymmetric);
    double err = 0;
    for (size_t j = 0; j < n && err < best_err; ++j) {
      const float deq = static_cast<float>(QuantizeCode(w[j], p) - p.zero) * p.scale;
      err += static_cast<double>(std::pow(std::fabs(w[j] - deq), 2.4f));
    }
    if (err < best_err) {
      best_err = err;
      best = p;
    }
  }
  return best;
}

// Lower Cholesky factor of a (row-major n × n, symmetric) in place; false if
// a is not positive definite. Rows below the pivot split over the pool.
bool Cholesky(std::vector<double>& a, size_t n, ThreadPool* pool) {
  for (size_t j = 0; j < n; ++j) {
    double* rj = a.data() + j * n;
    double s = rj[j];
    for (size_t k = 0; k < j; ++k) s -= rj[k] * rj[k];
    if (!(s > 0.0) || !std::isfinite(s)) return false;
    const double d = std::sqrt(s);
    rj[j] = d;
    const size_t rest = n - j - 1;
    const auto rows = [&](size_t b, size_t e) {
      for (size_t i = j + 1 + b; i < j + 1 + e; ++i) {
        double* ri = a.data() + i * n;
        double t = ri[j];
        for (size_t k = 0; k < j; ++k) t -= ri[k] * rj[k];
        ri[j] = t / d;
      }
    };
    if (rest * j > 1u << 16) {
      ParallelRanges(pool, rest, 16, rows);
    } else {
      rows(0, rest);
    }
  }
  for (size_t i = 0; i < n; ++i) std::fill(a.begin() + i * n + i + 1, a.begin() + (i + 1) * n, 0.0);
  return true;
}

// M = L⁻¹ for a lower-triangular L (row i of M is a combination of the
// earlier rows: M_i = (e_i − Σ_{k<i} L_ik M_k) / L_ii).
std::vector<double> InvertLower(const std::vector<double>& l, size_t n) {
  std::vector<double> m(n * n, 0.0);
  for (size_t i = 0; i < n; ++i) {
    double* mi = m.data() + i * n;
    mi[i] = 1.0;
    const double* li = l.data() + i * n;
    for (size_t k = 0; k < i; ++k) {
      const double c = li[k];
      if (c == 0.0) continue;
      const double* mk = m.data() + k * n;
      for (size_t c2 = 0; c2 <= k; ++c2) mi[c2] -= c * mk[c2];
    }
    const double inv = 1.0 / li[i];
    for (size_t c2 = 0; c2 <= i; ++c2) mi[c2] *= inv;
  }
  return m;
}

// U, upper triangular with H⁻¹ = UᵀU. With J the index reversal, the
// Cholesky factor L' of J·H·J gives H = R·Rᵀ for the upper-triangular
// R = J·L'·J, so H⁻¹ = (R⁻¹)ᵀ·R⁻¹ and U = R⁻¹ = J·L'⁻¹·J: one
// factorisation and one triangular inverse.
bool UpperFactorOfInverse(const std::vector<double>& h, size_t n, ThreadPool* pool,
                          std::vector<float>& u) {
  std::vector<double> a(n * n);
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = 0; j < n; ++j) a[i * n + j] = h[(n - 1 - i) * n + (n - 1 - j)];
  }
  if (!Cholesky(a, n, pool)) return false;
  const std::vector<double> m = InvertLower(a, n);
  u.assign(n * n, 0.0f);
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = i; j < n; ++j) {
      u[i * n + j] = static_cast<float>(m[(n - 1 - i) * n + (n - 1 - j)]);
    }
  }
  return true;
}

}  // namespace

// ---- HessianAccumulator ----

HessianAccumulator::HessianAccumulator(size_t k) : k_(k), sum_(k * k, 0.0), prod_(k * k) {
  if (k == 0) throw Error("HessianAccumulator: zero input width");
}

void HessianAccumulator::Add(const float* x, size_t m, const kernels::KernelTable& table,
                             ThreadPool* pool) {
  if (m == 0) return;
  // Xᵀ [k, m] is both the "weight" and the activations of one f32 matmul:
  // y[i, j] = Σ_t Xᵀ[i, t] · Xᵀ[j, t] = Σ_t x_t[i] · x_t[j].
  if (xt_.size() < k_ * m * sizeof(float)) xt_.Resize(k_ * m * sizeof(float));
  float* xt = xt_.as<float>();
  for (size_t t = 0; t < m; ++t) {
    for (size_t i = 0; i < k_; ++i) xt[i * m + t] = x[t * k_ + i];
  }
  const QTensor w = ViewTensor(MakeTensorDesc(Format::kF32, k_, m), xt_.data());
  const kernels::MatmulFn matmul = table.matmul[static_cast<int>(Format::kF32)];
  if (matmul == nullptr) throw Error("kernel table has no f32 matmul");
  ParallelRanges(pool, k_, 16, [&](size_t b, size_t e) { matmul(w, xt, k_, prod_.data(), b, e); });
  for (size_t i = 0; i < k_ * k_; ++i) sum_[i] += prod_[i];
  n_ += m;
}

std::vector<float> HessianAccumulator::Hessian() const {
  if (n_ == 0) throw Error("GPTQ: no calibration inputs reached this linear");
  std::vector<float> h(k_ * k_);
  const double f = 2.0 / static_cast<double>(n_);
  for (size_t i = 0; i < k_ * k_; ++i) h[i] = static_cast<float>(sum_[i] * f);
  return h;
}

// ---- The solver ----

QuantizedTensor GptqQuantize(const float* w_in, size_t rows, size_t cols, const float* h_in,
                             const GptqOptions& o, ThreadPool* pool, GptqStats* stats) {
  const uint32_t G = o.group_size;
  if (G != 32 && G != 64 && G != 128) {
    throw Error("GPTQ: group size must be 32, 64 or 128, got " + std::to_string(G));
  }
  if (o.block_size == 0 || o.block_size % G != 0) {
    throw Error("GPTQ: block size " + std::to_string(o.block_size) +
                " must be a positive multiple of the group size");
  }
  if (rows == 0 || cols == 0) throw Error("GPTQ: empty weight");
  if (!(o.damp > 0.0) || !std::isfinite(o.damp)) throw Error("GPTQ: damping must be positive");
  const size_t N = rows, K = cols;
  for (size_t i = 0; i < N * K; ++i) {
    if (!std::isfinite(w_in[i])) throw Error("GPTQ: the weight has a non-finite value");
  }
  std::vector<double> h(K * K);
  for (size_t i = 0; i < K * K; ++i) {
    if (!std::isfinite(h_in[i])) throw Error("GPTQ: the Hessian has a non-finite value");
    h[i] = h_in[i];
  }
  GptqStats st;
  std::vector<bool> dead(K, false);
  for (size_t i = 0; i < K; ++i) {
    if (h[i * K + i] == 0.0) {
      h[i * K + i] = 1.0;
      dead[i] = true;
      ++st.dead_inputs;
    }
  }
  // Visiting order (and stored order): by decreasing H_ii with act-order.
  std::vector<int32_t> perm(K);
  std::iota(perm.begin(), perm.end(), 0);
  if (o.act_order) {
    std::stable_sort(perm.begin(), perm.end(),
                     [&](int32_t a, int32_t b) { return h[a * K + a] > h[b * K + b]; });
  }
  std::vector<double> hp(K * K);
  for (size_t a = 0; a < K; ++a) {
    for (size_t b = 0; b < K; ++b) hp[a * K + b] = h[size_t(perm[a]) * K + size_t(perm[b])];
  }
  double mean_diag = 0;
  for (size_t i = 0; i < K; ++i) mean_diag += hp[i * K + i];
  mean_diag /= static_cast<double>(K);
  double damp = o.damp * mean_diag;
  std::vector<float> u;
  for (int attempt = 0;; ++attempt) {
    std::vector<double> hd = hp;
    for (size_t i = 0; i < K; ++i) hd[i * K + i] += damp;
    if (UpperFactorOfInverse(hd, K, pool, u)) break;
    if (attempt == 5) {
      throw Error("GPTQ: the Hessian is not positive definite even with damping " +
                  std::to_string(damp));
    }
    damp *= 10.0;  // rank-deficient calibration data: damp harder
  }
  st.damp_used = damp;

  QuantizeOptions qo;
  qo.group_size = G;
  qo.asymmetric = o.asymmetric;
  qo.perm = o.act_order ? perm.data() : nullptr;
  QuantizedTensor out = AllocateQuantized(Format::kQ4, N, K, qo);
  const TensorDesc& d = out.desc;
  uint8_t* blob = out.blob.data();
  auto* all_scales = reinterpret_cast<uint16_t*>(blob + d.scales_offset);
  uint8_t* all_zeros = blob + d.zeros_offset;

  const size_t B = o.block_size;
  constexpr size_t kTile = 8;  // rows processed together (U rows reused from cache)
  std::vector<double> tile_loss((N + kTile - 1) / kTile, 0.0);
  ParallelRanges(pool, (N + kTile - 1) / kTile, 1, [&](size_t t0, size_t t1) {
    std::vector<float> wt(kTile * K), err(kTile * B);
    std::vector<uint8_t> codes(kTile * d.padded_cols);
    std::vector<GroupParams> params(kTile);
    for (size_t t = t0; t < t1; ++t) {
      const size_t r0 = t * kTile, nr = std::min(kTile, N - r0);
      double loss = 0;
      for (size_t r = 0; r < nr; ++r) {
        for (size_t a = 0; a < K; ++a) {
          const size_t k = static_cast<size_t>(perm[a]);
          wt[r * K + a] = dead[k] ? 0.0f : w_in[(r0 + r) * K + k];
        }
      }
      for (size_t b0 = 0; b0 < K; b0 += B) {
        const size_t b1 = std::min(K, b0 + B);
        for (size_t i = b0; i < b1; ++i) {
          const float* ui = u.data() + i * K;
          const float dii = ui[i];
          for (size_t r = 0; r < nr; ++r) {
            float* wr = wt.data() + r * K;
            if (i % G == 0) {
              const size_t len = std::min<size_t>(G, K - i);
              params[r] = o.clip_search ? ClipSearchParams(wr + i, len, o.asymmetric)
                                        : FindParams(wr + i, len, o.asymmetric);
              const size_t g = i / G;
              all_scales[(r0 + r) * d.groups_per_row + g] = params[r].scale_bits;
              all_zeros[(r0 + r) * d.groups_per_row + g] = static_cast<uint8_t>(params[r].zero);
            }
            const int q = QuantizeCode(wr[i], params[r]);
            codes[r * d.padded_cols + i] = static_cast<uint8_t>(q);
            const float deq = static_cast<float>(q - params[r].zero) * params[r].scale;
            const float e = (wr[i] - deq) / dii;
            loss += static_cast<double>(e) * e;
            for (size_t j = i + 1; j < b1; ++j) wr[j] -= e * ui[j];
            err[r * B + (i - b0)] = e;
          }
        }
        // Lazy batch update of every later column with this block's errors.
        for (size_t r = 0; r < nr; ++r) {
          float* wr = wt.data() + r * K;
          for (size_t i = b0; i < b1; ++i) {
            const float e = err[r * B + (i - b0)];
            const float* ui = u.data() + i * K;
            for (size_t j = b1; j < K; ++j) wr[j] -= e * ui[j];
          }
        }
      }
      // Padding: the codes of each group's zero point; groups lying wholly
      // in padding get the all-zero group's parameters.
      for (size_t r = 0; r < nr; ++r) {
        const size_t n = r0 + r;
        uint8_t* c = codes.data() + r * d.padded_cols;
        for (size_t g = (K + G - 1) / G; g < d.groups_per_row; ++g) {
          const GroupParams p = FindParams(nullptr, 0, o.asymmetric);
          all_scales[n * d.groups_per_row + g] = p.scale_bits;
          all_zeros[n * d.groups_per_row + g] = static_cast<uint8_t>(p.zero);
        }
        for (size_t j = K; j < d.padded_cols; ++j) c[j] = all_zeros[n * d.groups_per_row + j / G];
        uint8_t* dst = blob + d.data_offset + n * d.row_bytes;
        for (size_t blk = 0; blk < d.padded_cols / kQ4BlockSize; ++blk) {
          const uint8_t* src = c + blk * kQ4BlockSize;
          for (size_t b = 0; b < kQ4BlockSize / 2; ++b) {
            dst[blk * 32 + b] = static_cast<uint8_t>(src[b] | (src[b + 32] << 4));
          }
        }
      }
      tile_loss[t] = loss / 2;
    }
  });
  for (const double l : tile_loss) st.loss += l;
  if (stats != nullptr) *stats = st;
  return out;
}

}  // namespace qlm
