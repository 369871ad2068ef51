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
#include "quant/sfp8.h"

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

namespace {

constexpr size_t kTile = 8;  // rows processed together (U rows reused from cache)

// The per-column quantizers. Each has a per-thread Worker with
//   float Quantize(r, n, wr, i): quantizes column i (visiting order) of tile
//     row r (tensor row n) from the current, error-compensated weights wr,
//     records its code and returns the dequantized value;
//   void FinishRow(r, n): writes row n's codes (and padding) to the blob.

// q4: at each group start, the group's scale and zero point from the
// current weights by qlm's rule (or the clip search); codes in visiting
// order, which is the stored order (the act-order perm is stored).
struct Q4Columns {
  const GptqOptions& o;
  const TensorDesc& d;
  uint8_t* blob;
  uint16_t* all_scales;
  uint8_t* all_zeros;

  Q4Columns(const GptqOptions& options, QuantizedTensor& out)
      : o(options),
        d(out.desc),
        blob(out.blob.data()),
        all_scales(reinterpret_cast<uint16_t*>(blob + d.scales_offset)),
        all_zeros(blob + d.zeros_offset) {}

  class Worker {
   public:
    explicit Worker(const Q4Columns& q) : q_(q), codes_(kTile * q.d.padded_cols), params_(kTile) {}

    float Quantize(size_t r, size_t n, const float* wr, size_t i) {
      const uint32_t G = q_.o.group_size;
      const size_t K = q_.d.cols;
      GroupParams& p = params_[r];
      if (i % G == 0) {
        const size_t len = std::min<size_t>(G, K - i);
        p = q_.o.clip_search ? ClipSearchParams(wr + i, len, q_.o.asymmetric)
                             : FindParams(wr + i, len, q_.o.asymmetric);
        const size_t g = i / G;
        q_.all_scales[n * q_.d.groups_per_row + g] = p.scale_bits;
        q_.all_zeros[n * q_.d.groups_per_row + g] = static_cast<uint8_t>(p.zero);
      }
      const int c = QuantizeCode(wr[i], p);
      codes_[r * q_.d.padded_cols + i] = static_cast<uint8_t>(c);
      return static_cast<float>(c - p.zero) * p.scale;
    }

    // Re-rounds column i to `target` on its group's already chosen grid.
    float Requantize(size_t r, size_t n, size_t i, float target) {
      const size_t at = n * q_.d.groups_per_row + i / q_.o.group_size;
      GroupParams p;
      p.scale_bits = q_.all_scales[at];
      p.scale = F16ToF32(p.scale_bits);
      p.zero = q_.all_zeros[at];
      const int c = QuantizeCode(target, p);
      codes_[r * q_.d.padded_cols + i] = static_cast<uint8_t>(c);
      return static_cast<float>(c - p.zero) * p.scale;
    }

    // Padding: the codes of each group's zero point; groups lying wholly in
    // padding get the all-zero group's parameters. Then the nibble packing.
    void FinishRow(size_t r, size_t n) {
      const TensorDesc& d = q_.d;
      const uint32_t G = q_.o.group_size;
      const size_t K = d.cols;
      uint8_t* c = codes_.data() + r * d.padded_cols;
      for (size_t g = (K + G - 1) / G; g < d.groups_per_row; ++g) {
        const GroupParams p = FindParams(nullptr, 0, q_.o.asymmetric);
        q_.all_scales[n * d.groups_per_row + g] = p.scale_bits;
        q_.all_zeros[n * d.groups_per_row + g] = static_cast<uint8_t>(p.zero);
      }
      for (size_t j = K; j < d.padded_cols; ++j) c[j] = q_.all_zeros[n * d.groups_per_row + j / G];
      uint8_t* dst = q_.blob + d.data_offset + n * d.row_bytes;
      for (size_t blk = 0; blk < d.padded_cols / kQ4BlockSize; ++blk) {
        const uint8_t* src = c + blk * kQ4BlockSize;
        for (size_t b = 0; b < kQ4BlockSize / 2; ++b) {
          dst[blk * 32 + b] = static_cast<uint8_t>(src[b] | (src[b + 32] << 4));
        }
      }
    }

   private:
    const Q4Columns& q_;
    std::vector<uint8_t> codes_;
    std::vector<GroupParams> params_;
  };
};

// sfp8: one tensor scale, fixed before the solve from the ORIGINAL weights
// (Sfp8TensorScale, as round-to-nearest uses); each column's code is
// Sfp8Encode(w / scale) of the compensated weight, which saturates at
// ±1.875 when compensation pushes a weight past the original max|w|. The
// format has no permutation, so codes go straight to their original input
// column (act-order only changes the visiting order).
struct Sfp8Columns {
  const TensorDesc& d;
  uint8_t* blob;
  const int32_t* perm;
  float scale;

  Sfp8Columns(QuantizedTensor& out, const int32_t* visit_order)
      : d(out.desc), blob(out.blob.data()), perm(visit_order), scale(out.desc.tensor_scale) {}

  class Worker {
   public:
    explicit Worker(const Sfp8Columns& q) : q_(q) {}

    float Quantize(size_t r, size_t n, const float* wr, size_t i) {
      return Requantize(r, n, i, wr[i]);
    }
    float Requantize(size_t, size_t n, size_t i, float target) {
      const uint8_t c = Sfp8Encode(target / q_.scale);
      q_.blob[q_.d.data_offset + n * q_.d.row_bytes + static_cast<size_t>(q_.perm[i])] = c;
      return Sfp8Decode(c) * q_.scale;
    }
    void FinishRow(size_t, size_t) {}  // no padding, codes already written

   private:
    const Sfp8Columns& q_;
  };
};

// One GPTQ problem in visiting order: the weights, the visiting order and
// dead inputs, U, and (for the refinement) the damped, permuted H.
struct Problem {
  const float* w_in;
  size_t N, K;
  const std::vector<int32_t>& perm;
  const std::vector<bool>& dead;
  const std::vector<float>& u;
  size_t block_size;
  const std::vector<double>& h;  // damped H in visiting order
  uint32_t refine_passes;
};

// Coordinate descent on one row's proxy loss (w − ŵ)ᵀH(w − ŵ) after GPTQ:
// with g = H(w − ŵ), moving ŵ_i by δ changes the loss by δ²H_ii − 2δg_i,
// so the best grid value for column i alone is the one nearest
// ŵ_i + g_i/H_ii. Sweeps the columns, taking only moves that lower the
// loss, until a sweep changes nothing or `passes` sweeps are done. With a
// diagonal H the target is w_i itself, so round-to-nearest is a fixed
// point. Returns the number of codes changed.
template <class Worker>
size_t RefineRow(Worker& q, size_t r, size_t n, const float* w0, float* wq, const Problem& p,
                 std::vector<double>& g) {
  const size_t K = p.K;
  for (size_t i = 0; i < K; ++i) {
    const double* hi = p.h.data() + i * K;
    double s = 0;
    for (size_t j = 0; j < K; ++j) s += hi[j] * (double(w0[j]) - double(wq[j]));
    g[i] = s;
  }
  size_t changed = 0;
  for (uint32_t pass = 0; pass < p.refine_passes; ++pass) {
    size_t changed_now = 0;
    for (size_t i = 0; i < K; ++i) {
      if (p.dead[static_cast<size_t>(p.perm[i])]) continue;
      const double hii = p.h[i * K + i];
      const float target = static_cast<float>(double(wq[i]) + g[i] / hii);
      const float old = wq[i];
      const float deq = q.Requantize(r, n, i, target);
      const double delta = double(deq) - double(old);
      if (delta == 0.0) continue;
      if (delta * delta * hii - 2.0 * delta * g[i] >= 0.0) {
        q.Requantize(r, n, i, old);  // not an improvement: restore the code
        continue;
      }
      wq[i] = deq;
      const double* hi = p.h.data() + i * K;  // column i of the symmetric H
      for (size_t j = 0; j < K; ++j) g[j] -= delta * hi[j];
      ++changed_now;
    }
    changed += changed_now;
    if (changed_now == 0) break;
  }
  return changed;
}

// GPTQ's column loop over every row with U (upper Cholesky factor of the
// permuted, damped H⁻¹), then the optional refinement; returns GPTQ's loss
// estimate and adds the refinement's code changes to *refined.
template <class Columns>
double SolveRows(const Columns& columns, const Problem& p, ThreadPool* pool, size_t* refined) {
  const size_t N = p.N, K = p.K, B = p.block_size;
  const std::vector<float>& u = p.u;
  const size_t tiles = (N + kTile - 1) / kTile;
  std::vector<double> tile_loss(tiles, 0.0);
  std::vector<size_t> tile_refined(tiles, 0);
  ParallelRanges(pool, tiles, 1, [&](size_t t0, size_t t1) {
    std::vector<float> wt(kTile * K), err(kTile * B);
    std::vector<float> w0, wq;  // originals and dequantized values, for the refinement
    std::vector<double> g;
    if (p.refine_passes > 0) {
      w0.resize(kTile * K);
      wq.resize(kTile * K);
      g.resize(K);
    }
    typename Columns::Worker q(columns);
    for (size_t t = t0; t < t1; ++t) {
      const size_t r0 = t * kTile, nr = std::min(kTile, N - r0);
      double loss = 0;
      for (size_t r = 0; r < nr; ++r) {
        for (size_t a = 0; a < K; ++a) {
          const size_t k = static_cast<size_t>(p.perm[a]);
          wt[r * K + a] = p.dead[k] ? 0.0f : p.w_in[(r0 + r) * K + k];
        }
      }
      if (!w0.empty()) std::copy(wt.begin(), wt.end(), w0.begin());
      for (size_t b0 = 0; b0 < K; b0 += B) {
        const size_t b1 = std::min(K, b0 + B);
        for (size_t i = b0; i < b1; ++i) {
          const float* ui = u.data() + i * K;
          const float dii = ui[i];
          for (size_t r = 0; r < nr; ++r) {
            float* wr = wt.data() + r * K;
            const float deq = q.Quantize(r, r0 + r, wr, i);
            if (!wq.empty()) wq[r * K + i] = deq;
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
      for (size_t r = 0; r < nr; ++r) {
        if (p.refine_passes > 0) {
          tile_refined[t] += RefineRow(q, r, r0 + r, w0.data() + r * K, wq.data() + r * K, p, g);
        }
        q.FinishRow(r, r0 + r);
      }
      tile_loss[t] = loss / 2;
    }
  });
  double loss = 0;
  for (const double l : tile_loss) loss += l;
  for (const size_t c : tile_refined) *refined += c;
  return loss;
}

}  // namespace

QuantizedTensor GptqQuantize(const float* w_in, size_t rows, size_t cols, const float* h_in,
                             const GptqOptions& o, ThreadPool* pool, GptqStats* stats) {
  const bool q4 = o.format == Format::kQ4;
  if (!q4 && o.format != Format::kSFP8) {
    throw Error(std::string("GPTQ: no quantizer for format ") + FormatName(o.format) +
                " (q4 or sfp8)");
  }
  const uint32_t G = o.group_size;
  if (q4 && G != 32 && G != 64 && G != 128) {
    throw Error("GPTQ: group size must be 32, 64 or 128, got " + std::to_string(G));
  }
  if (o.block_size == 0 || (q4 && o.block_size % G != 0)) {
    throw Error("GPTQ: block size " + std::to_string(o.block_size) +
                (q4 ? " must be a positive multiple of the group size" : " must be positive"));
  }
  if (!q4 && o.clip_search) throw Error("GPTQ: the clip search applies to q4 only");
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
  // Visiting order (and, for q4, stored order): by decreasing H_ii with
  // act-order.
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
  std::vector<double> hd;
  for (int attempt = 0;; ++attempt) {
    hd = hp;
    for (size_t i = 0; i < K; ++i) hd[i * K + i] += damp;
    if (UpperFactorOfInverse(hd, K, pool, u)) break;
    if (attempt == 5) {
      throw Error("GPTQ: the Hessian is not positive definite even with damping " +
                  std::to_string(damp));
    }
    damp *= 10.0;  // rank-deficient calibration data: damp harder
  }
  st.damp_used = damp;

  const Problem problem{w_in, N, K, perm, dead, u, o.block_size, hd, o.refine_passes};
  QuantizedTensor out;
  if (q4) {
    QuantizeOptions qo;
    qo.group_size = G;
    qo.asymmetric = o.asymmetric;
    qo.perm = o.act_order ? perm.data() : nullptr;
    out = AllocateQuantized(Format::kQ4, N, K, qo);
    st.loss = SolveRows(Q4Columns(o, out), problem, pool, &st.refined);
  } else {
    out = AllocateQuantized(Format::kSFP8, N, K);
    out.desc.tensor_scale = Sfp8TensorScale(w_in, N * K);
    st.loss = SolveRows(Sfp8Columns(out, perm.data()), problem, pool, &st.refined);
  }
  if (stats != nullptr) *stats = st;
  return out;
}

}  // namespace qlm
