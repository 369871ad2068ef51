// Scalar references for every non-matmul op: plain loops, sums accumulated in
// double, transcendental functions from <cmath>. They define what the SIMD
// tables must compute (tests/kernels/ops_test.cc) and are the `scalar` table.
#include "kernels/scalar/ops.h"

#include "quant/half.h"
#include "quant/sfp8.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

namespace qlm::kernels {
namespace {

// True iff a query at absolute position `q_pos` may attend to a slot holding
// absolute position `pos` (see AttentionArgs).
bool Attends(int32_t pos, int64_t q_pos, int32_t window) {
  if (pos < 0 || pos > q_pos) return false;
  return window <= 0 || q_pos - pos < window;
}

// Row `slot` of kv head `kvh` of K (or V), decoded to doubles (exact for every
// KvType: the decoded value is a float, times the row scale in double).
void DecodeKvRow(const AttentionArgs& a, bool key, size_t kvh, size_t slot, double* out) {
  const size_t hd = a.head_dim, row = kvh * a.capacity + slot;
  if (a.kv_type == KvType::kF32) {
    const float* src = (key ? a.k : a.v) + row * hd;
    for (size_t d = 0; d < hd; ++d) out[d] = src[d];
    return;
  }
  const uint8_t* src = (key ? a.k_codes : a.v_codes) + row * hd * KvElemBytes(a.kv_type);
  const double scale = KvHasScale(a.kv_type) ? (key ? a.k_scale : a.v_scale)[row] : 1.0;
  for (size_t d = 0; d < hd; ++d) {
    float x = 0.0f;
    switch (a.kv_type) {
      case KvType::kBF16: {
        uint16_t b;
        std::memcpy(&b, src + 2 * d, 2);
        x = BF16ToF32(b);
        break;
      }
      case KvType::kInt8:
        x = static_cast<float>(static_cast<int8_t>(src[d]));
        break;
      case KvType::kSFP8:
        x = Sfp8Decode(src[d]);
        break;
      case KvType::kF32:
        break;
    }
    out[d] = scale * x;
  }
}

void AttentionRef(const AttentionArgs& a) {
  const size_t group = a.n_heads / a.n_kv_heads;
  const size_t hd = a.head_dim;
  // O(n_slots) per thread: the scores of one (query, head) row.
  thread_local std::vector<double> scores, acc, row;
  scores.resize(a.n_slots);
  row.resize(hd);
  for (size_t i = 0; i < a.n_q; ++i) {
    const int64_t q_pos = static_cast<int64_t>(a.q_pos0) + static_cast<int64_t>(i);
    for (size_t h = a.head_begin; h < a.head_end; ++h) {
      const float* q = a.q + (i * a.n_heads + h) * hd;
      float* out = a.out + (i * a.n_heads + h) * hd;
      const size_t kvh = h / group;
      double max_score = -std::numeric_limits<double>::infinity();
      bool any = false;
      for (size_t s = 0; s < a.n_slots; ++s) {
        if (!Attends(a.slot_pos[s], q_pos, a.window)) continue;
        DecodeKvRow(a, /*key=*/true, kvh, s, row.data());
        double dot = 0.0;
        for (size_t d = 0; d < hd; ++d) dot += static_cast<double>(q[d]) * row[d];
        double score = static_cast<double>(a.scale) * dot;
        if (a.softcap > 0.0f) score = a.softcap * std::tanh(score / a.softcap);
        scores[s] = score;
        if (!any || score > max_score) max_score = score;
        any = true;
      }
      for (size_t d = 0; d < hd; ++d) out[d] = 0.0f;
      if (!any) continue;  // nothing to attend to: the output is zero
      double sum = 0.0;
      for (size_t s = 0; s < a.n_slots; ++s) {
        if (!Attends(a.slot_pos[s], q_pos, a.window)) continue;
        scores[s] = std::exp(scores[s] - max_score);
        sum += scores[s];
      }
      acc.assign(hd, 0.0);
      for (size_t s = 0; s < a.n_slots; ++s) {
        if (!Attends(a.slot_pos[s], q_pos, a.window)) continue;
        DecodeKvRow(a, /*key=*/false, kvh, s, row.data());
        for (size_t d = 0; d < hd; ++d) acc[d] += scores[s] * row[d];
      }
      for (size_t d = 0; d < hd; ++d) out[d] = static_cast<float>(acc[d] / sum);
    }
  }
}

void RmsNormRef(const float* x, const float* w, float* y, size_t n_rows, size_t dim, float eps,
                bool add_one) {
  for (size_t r = 0; r < n_rows; ++r) {
    const float* xr = x + r * dim;
    float* yr = y + r * dim;
    double ss = 0.0;
    for (size_t i = 0; i < dim; ++i) ss += static_cast<double>(xr[i]) * xr[i];
    const double inv = 1.0 / std::sqrt(ss / static_cast<double>(dim) + eps);
    for (size_t i = 0; i < dim; ++i) {
      const double wi = add_one ? 1.0 + static_cast<double>(w[i]) : static_cast<double>(w[i]);
      yr[i] = static_cast<float>(xr[i] * inv * wi);
    }
  }
}

void RopeRef(float* x, size_t n_tokens, size_t n_heads, size_t head_dim, size_t token_stride,
             const float* cos, const float* sin) {
  const size_t half = head_dim / 2;
  for (size_t t = 0; t < n_tokens; ++t) {
    const float* c = cos + t * half;
    const float* s = sin + t * half;
    for (size_t h = 0; h < n_heads; ++h) {
      float* xh = x + t * token_stride + h * head_dim;
      for (size_t d = 0; d < half; ++d) {
        const double x1 = xh[d], x2 = xh[d + half];
        xh[d] = static_cast<float>(x1 * c[d] - x2 * s[d]);
        xh[d + half] = static_cast<float>(x2 * c[d] + x1 * s[d]);
      }
    }
  }
}

// PyTorch gelu(approximate='tanh').
double GeluTanh(double x) {
  constexpr double kSqrt2OverPi = 0.7978845608028654;
  return 0.5 * x * (1.0 + std::tanh(kSqrt2OverPi * (x + 0.044715 * x * x * x)));
}

void GegluRef(const float* gate, const float* up, float* out, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<float>(GeluTanh(gate[i]) * up[i]);
}

void SwigluRef(const float* gate, const float* up, float* out, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    const double g = gate[i];
    out[i] = static_cast<float>(g / (1.0 + std::exp(-g)) * up[i]);
  }
}

void SoftmaxRef(float* x, size_t n) {
  if (n == 0) return;
  float max_v = x[0];
  for (size_t i = 1; i < n; ++i) max_v = x[i] > max_v ? x[i] : max_v;
  double sum = 0.0;
  for (size_t i = 0; i < n; ++i) sum += std::exp(static_cast<double>(x[i]) - max_v);
  for (size_t i = 0; i < n; ++i) {
    x[i] = static_cast<float>(std::exp(static_cast<double>(x[i]) - max_v) / sum);
  }
}

void AddRef(const float* a, const float* b, float* out, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

void ScaleRef(float* x, float s, size_t n) {
  for (size_t i = 0; i < n; ++i) x[i] *= s;
}

void SoftcapRef(float* x, float cap, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    x[i] = static_cast<float>(cap * std::tanh(static_cast<double>(x[i]) / cap));
  }
}

size_t ArgmaxRef(const float* x, size_t n) {
  size_t best = 0;
  for (size_t i = 1; i < n; ++i) {
    if (x[i] > x[best]) best = i;
  }
  return best;
}

// Eight independent accumulators: the loop is limited by loads, not by one
// add chain.
uint64_t ReadSumRef(const void* p, size_t bytes) {
  const uint64_t* w = static_cast<const uint64_t*>(p);
  const size_t words = bytes / sizeof(uint64_t);
  uint64_t a[8] = {};
  size_t i = 0;
  for (; i + 8 <= words; i += 8) {
    for (size_t j = 0; j < 8; ++j) a[j] += w[i + j];
  }
  for (; i < words; ++i) a[0] += w[i];
  uint64_t s = 0;
  for (uint64_t v : a) s += v;
  return s;
}

}  // namespace

void FillScalarOps(KernelTable& t) {
  t.attention = AttentionRef;
  t.rmsnorm = RmsNormRef;
  t.rope = RopeRef;
  t.geglu = GegluRef;
  t.swiglu = SwigluRef;
  t.softmax = SoftmaxRef;
  t.add = AddRef;
  t.scale = ScaleRef;
  t.softcap = SoftcapRef;
  t.argmax = ArgmaxRef;
  t.read_sum = ReadSumRef;
}

}  // namespace qlm::kernels
