// Non-matmul kernels. Two layers of checks:
//  * OpsReference: the scalar references against straightforward
//    double-precision formulas written independently here.
//  * OpsIsa/<isa>: every table compiled into this binary against the scalar
//    reference on odd sizes (NEON runs under qemu-aarch64 in scripts/test.sh).
// Tolerances, stated as |got - want| <= atol + rtol·|want| (measured errors
// on avx2/avx512 are 5-15 % of these):
//  * add, scale: exact;
//  * softcap, geglu, swiglu, rmsnorm: atol 2e-7, rtol 2e-6 (xsimd's exp and
//    tanh are a few ulp; float against double arithmetic);
//  * softmax: rtol 2e-6; rope: atol 1e-6, rtol 2e-6 (fused multiply-adds);
//  * attention: atol 3e-6 (outputs are convex combinations of V rows with
//    |v| <= 1; float dot products of up to 256 terms);
//  * scalar references against the double formulas: 1e-6 (argmax exact).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <complex>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/registry.h"

namespace qlm::kernels {
namespace {

constexpr size_t kSizes[] = {1, 3, 7, 15, 17, 33, 100, 257};

std::vector<float> RandomVec(size_t n, uint32_t seed, float lo = -2.0f, float hi = 2.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// Max over i of |got - want| / (atol + rtol·|want|); <= 1 passes.
template <class Want>
double WorstRatio(const float* got, const Want* want, size_t n, double atol, double rtol,
                  size_t* where = nullptr) {
  double worst = 0.0;
  for (size_t i = 0; i < n; ++i) {
    const double err = std::fabs(static_cast<double>(got[i]) - want[i]);
    const double r = std::isfinite(err) ? err / (atol + rtol * std::fabs(want[i]))
                                        : std::numeric_limits<double>::infinity();
    if (!(r <= worst)) {
      worst = r;
      if (where) *where = i;
    }
  }
  return worst;
}

#define EXPECT_CLOSE(got, want, n, atol, rtol)                                                     \
  do {                                                                                             \
    size_t where_ = 0;                                                                             \
    const double ratio_ = WorstRatio((got), (want), (n), (atol), (rtol), &where_);                 \
    EXPECT_LE(ratio_, 1.0) << "worst at [" << where_ << "]: got " << (got)[where_] << " want "     \
                           << (want)[where_] << " (atol " << (atol) << ", rtol " << (rtol) << ")"; \
  } while (0)

const KernelTable& Scalar() { return GetTable(Isa::kScalar); }

// ---------------------------------------------------------------------------
// Attention: an independent double-precision implementation (explicit score
// matrix, explicit mask) and the test configurations shared by both layers.

struct AttnCase {
  std::string name;
  size_t n_q, n_heads, n_kv_heads, head_dim, capacity, n_slots;
  std::vector<int32_t> slot_pos;
  int32_t q_pos0;
  float scale, softcap;
  int32_t window;
  size_t head_begin, head_end;
};

struct AttnData {
  std::vector<float> q, k, v;
};

AttnData MakeAttnData(const AttnCase& c, uint32_t seed) {
  AttnData d;
  d.q = RandomVec(c.n_q * c.n_heads * c.head_dim, seed);
  d.k = RandomVec(c.n_kv_heads * c.capacity * c.head_dim, seed + 1);
  d.v = RandomVec(c.n_kv_heads * c.capacity * c.head_dim, seed + 2, -1.0f, 1.0f);
  return d;
}

AttentionArgs MakeArgs(const AttnCase& c, const AttnData& d, float* out) {
  AttentionArgs a;
  a.q = d.q.data();
  a.out = out;
  a.k = d.k.data();
  a.v = d.v.data();
  a.slot_pos = c.slot_pos.data();
  a.n_slots = c.n_slots;
  a.capacity = c.capacity;
  a.n_q = c.n_q;
  a.n_heads = c.n_heads;
  a.n_kv_heads = c.n_kv_heads;
  a.head_dim = c.head_dim;
  a.q_pos0 = c.q_pos0;
  a.scale = c.scale;
  a.softcap = c.softcap;
  a.window = c.window;
  a.head_begin = c.head_begin;
  a.head_end = c.head_end;
  return a;
}

std::vector<double> NaiveAttention(const AttnCase& c, const AttnData& d) {
  const size_t hd = c.head_dim;
  std::vector<double> out(c.n_q * c.n_heads * hd, 0.0);
  for (size_t i = 0; i < c.n_q; ++i) {
    const long q_pos = c.q_pos0 + static_cast<long>(i);
    for (size_t h = c.head_begin; h < c.head_end; ++h) {
      const size_t kvh = h * c.n_kv_heads / c.n_heads;
      std::vector<double> score(c.n_slots);
      std::vector<bool> keep(c.n_slots);
      for (size_t s = 0; s < c.n_slots; ++s) {
        const long p = c.slot_pos[s];
        keep[s] = p >= 0 && p <= q_pos && (c.window <= 0 || q_pos - p < c.window);
        double dot = 0.0;
        for (size_t e = 0; e < hd; ++e) {
          dot += static_cast<double>(d.q[(i * c.n_heads + h) * hd + e]) *
                 d.k[(kvh * c.capacity + s) * hd + e];
        }
        score[s] = c.scale * dot;
        if (c.softcap > 0) score[s] = c.softcap * std::tanh(score[s] / c.softcap);
      }
      double m = -INFINITY;
      for (size_t s = 0; s < c.n_slots; ++s) {
        if (keep[s]) m = std::max(m, score[s]);
      }
      double z = 0.0;
      for (size_t s = 0; s < c.n_slots; ++s) z += keep[s] ? std::exp(score[s] - m) : 0.0;
      for (size_t s = 0; s < c.n_slots; ++s) {
        if (!keep[s]) continue;
        const double p = std::exp(score[s] - m) / z;
        for (size_t e = 0; e < hd; ++e) {
          out[(i * c.n_heads + h) * hd + e] += p * d.v[(kvh * c.capacity + s) * hd + e];
        }
      }
    }
  }
  return out;
}

// Slot layouts. Linear: slot s holds position s for s < filled, then empty.
std::vector<int32_t> LinearSlots(size_t capacity, size_t filled) {
  std::vector<int32_t> p(capacity, -1);
  for (size_t s = 0; s < filled && s < capacity; ++s) p[s] = static_cast<int32_t>(s);
  return p;
}

// Ring buffer after writing positions 0..written-1: slot pos % capacity.
std::vector<int32_t> RingSlots(size_t capacity, size_t written) {
  std::vector<int32_t> p(capacity, -1);
  for (size_t pos = 0; pos < written; ++pos) p[pos % capacity] = static_cast<int32_t>(pos);
  return p;
}

// Positions 0..filled-1 in a random slot order, the rest empty (-1).
std::vector<int32_t> ShuffledSlots(size_t capacity, size_t filled, uint32_t seed) {
  std::vector<int32_t> p = LinearSlots(capacity, filled);
  std::mt19937 rng(seed);
  std::shuffle(p.begin(), p.end(), rng);
  return p;
}

std::vector<AttnCase> AttnCases() {
  std::vector<AttnCase> cases;
  const size_t head_dims[] = {32, 64, 256, 6, 18};
  for (size_t hd : head_dims) {
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
    const std::string d = "_hd" + std::to_string(hd);
    // Decode, MHA, linear cache with empty tail slots.
    cases.push_back(
        {"decode_mha" + d, 1, 1, 1, hd, 40, 37, LinearSlots(40, 30), 29, scale, 0.0f, 0, 0, 1});
    // Decode, GQA 4:2 with soft-cap (scale large enough that the cap bites).
    cases.push_back({"decode_gqa42_softcap" + d, 1, 4, 2, hd, 33, 33, LinearSlots(33, 33), 32,
                     4.0f * scale, 2.0f, 0, 0, 4});
    // Prefill, GQA 4:1 (MQA), causal: queries at 10..16 over positions 0..16.
    cases.push_back({"prefill_gqa41_causal" + d, 7, 4, 1, hd, 20, 17, LinearSlots(20, 17), 10,
                     scale, 0.0f, 0, 0, 4});
    // Sliding window over a ring buffer that has wrapped (positions 9..25).
    cases.push_back(
        {"ring_window" + d, 3, 4, 2, hd, 17, 17, RingSlots(17, 26), 23, scale, 0.0f, 5, 0, 4});
    // Causal + window with a small cap: masked slots must stay masked after
    // the soft-cap (a capped -inf would leak weight e^(-cap - max)).
    cases.push_back({"causal_window_smallcap" + d, 3, 2, 1, hd, 24, 20, LinearSlots(24, 12), 8,
                     4.0f * scale, 1.0f, 6, 0, 2});
    // Shuffled slots with holes, soft-cap, window, a head sub-range.
    cases.push_back({"shuffled_subrange" + d, 3, 4, 2, hd, 50, 50,
                     ShuffledSlots(50, 35, static_cast<uint32_t>(hd)), 32, scale, 30.0f, 12, 1, 3});
  }
  // Odd group layout: 8 heads on 4 kv heads, heads 3..6 only (crosses groups).
  cases.push_back(
      {"gqa84_heads3to6", 2, 8, 4, 64, 24, 21, LinearSlots(24, 21), 19, 0.125f, 0.0f, 0, 3, 7});
  // A query block where the first query sees nothing (cache empty until pos 5)
  // and the rest see a few slots: rows with no keys must come out as zeros.
  {
    std::vector<int32_t> p(16, -1);
    for (int s = 0; s < 4; ++s) p[s] = 5 + s;  // positions 5..8
    cases.push_back({"nothing_to_attend", 4, 2, 1, 18, 16, 16, p, 4, 0.3f, 0.0f, 0, 0, 2});
  }
  // Row tiles of every size 1..8: 7 and 5 rows (MHA, one head per kv head).
  cases.push_back({"mha_n7", 7, 1, 1, 18, 12, 12, LinearSlots(12, 12), 5, 0.3f, 0.0f, 0, 0, 1});
  cases.push_back(
      {"mha_n5_window", 5, 2, 2, 64, 12, 12, RingSlots(12, 15), 10, 0.2f, 0.0f, 4, 1, 2});
  // Long-ish context with n_q = 17 (several row tiles per kv head).
  cases.push_back(
      {"prefill_n17", 17, 2, 1, 32, 300, 257, LinearSlots(300, 257), 240, 0.2f, 50.0f, 0, 0, 2});
  return cases;
}

TEST(OpsReference, AttentionMatchesNaiveDouble) {
  for (const AttnCase& c : AttnCases()) {
    SCOPED_TRACE(c.name);
    const AttnData d = MakeAttnData(c, 7);
    const float kSentinel = 1234.5f;
    std::vector<float> out(c.n_q * c.n_heads * c.head_dim, kSentinel);
    Scalar().attention(MakeArgs(c, d, out.data()));
    const std::vector<double> want = NaiveAttention(c, d);
    for (size_t i = 0; i < c.n_q; ++i) {
      for (size_t h = 0; h < c.n_heads; ++h) {
        const size_t off = (i * c.n_heads + h) * c.head_dim;
        if (h < c.head_begin || h >= c.head_end) {
          for (size_t e = 0; e < c.head_dim; ++e) ASSERT_EQ(out[off + e], kSentinel);
          continue;
        }
        EXPECT_CLOSE(out.data() + off, want.data() + off, c.head_dim, 1e-6, 1e-6);
      }
    }
  }
}

TEST(OpsReference, AttentionWithNothingToAttendIsZero) {
  AttnCase c{"empty", 1, 2, 1, 8, 4, 4, {-1, -1, -1, -1}, 3, 1.0f, 0.0f, 0, 0, 2};
  const AttnData d = MakeAttnData(c, 1);
  std::vector<float> out(16, 99.0f);
  Scalar().attention(MakeArgs(c, d, out.data()));
  for (float x : out) EXPECT_EQ(x, 0.0f);
}

TEST(OpsReference, AttentionSingleKeyReturnsItsValue) {
  // With one visible key the softmax is exactly 1: out == v of that slot.
  AttnCase c{"one", 1, 1, 1, 6, 3, 3, {7, 2, -1}, 2, 0.5f, 0.0f, 0, 0, 1};
  const AttnData d = MakeAttnData(c, 3);
  std::vector<float> out(6);
  Scalar().attention(MakeArgs(c, d, out.data()));
  for (size_t e = 0; e < 6; ++e) EXPECT_FLOAT_EQ(out[e], d.v[1 * 6 + e]);
}

// ---------------------------------------------------------------------------
// Scalar references against double formulas.

TEST(OpsReference, RmsNormByDefinition) {
  for (size_t dim : kSizes) {
    for (bool add_one : {false, true}) {
      SCOPED_TRACE("dim " + std::to_string(dim) + (add_one ? " gemma" : " llama"));
      const size_t rows = 3;
      const std::vector<float> x = RandomVec(rows * dim, 11), w = RandomVec(dim, 12, -0.5f, 0.5f);
      const float eps = 1e-6f;
      std::vector<float> y(rows * dim);
      Scalar().rmsnorm(x.data(), w.data(), y.data(), rows, dim, eps, add_one);
      std::vector<double> want(rows * dim);
      for (size_t r = 0; r < rows; ++r) {
        double ms = 0.0;
        for (size_t i = 0; i < dim; ++i) ms += std::pow(x[r * dim + i], 2.0) / dim;
        for (size_t i = 0; i < dim; ++i) {
          want[r * dim + i] = x[r * dim + i] / std::sqrt(ms + eps) * ((add_one ? 1.0 : 0.0) + w[i]);
        }
      }
      std::vector<float> wantf(want.begin(), want.end());
      EXPECT_CLOSE(y.data(), wantf.data(), y.size(), 1e-6, 1e-6);
      // In place (y aliases x) gives the same result.
      std::vector<float> inplace = x;
      Scalar().rmsnorm(inplace.data(), w.data(), inplace.data(), rows, dim, eps, add_one);
      EXPECT_EQ(inplace, y);
    }
  }
}

// cos/sin tables as an engine builds them: angle = pos · base^(-2d/head_dim).
void RopeTables(size_t n_tokens, size_t head_dim, int pos0, std::vector<float>* cos,
                std::vector<float>* sin) {
  const size_t half = head_dim / 2;
  cos->resize(n_tokens * half);
  sin->resize(n_tokens * half);
  for (size_t t = 0; t < n_tokens; ++t) {
    for (size_t d = 0; d < half; ++d) {
      const double angle = (pos0 + static_cast<double>(t)) *
                           std::pow(10000.0, -2.0 * static_cast<double>(d) / head_dim);
      (*cos)[t * half + d] = static_cast<float>(std::cos(angle));
      (*sin)[t * half + d] = static_cast<float>(std::sin(angle));
    }
  }
}

TEST(OpsReference, RopeIsAnExplicitRotation) {
  for (size_t head_dim : {2u, 6u, 18u, 32u, 64u, 256u}) {
    SCOPED_TRACE("head_dim " + std::to_string(head_dim));
    const size_t n_tokens = 3, n_heads = 2, half = head_dim / 2;
    const size_t stride = n_heads * head_dim + 5;  // e.g. a fused QKV row
    std::vector<float> cos, sin;
    RopeTables(n_tokens, head_dim, 17, &cos, &sin);
    const std::vector<float> x0 = RandomVec(n_tokens * stride, 21);
    std::vector<float> x = x0;
    Scalar().rope(x.data(), n_tokens, n_heads, head_dim, stride, cos.data(), sin.data());
    for (size_t t = 0; t < n_tokens; ++t) {
      for (size_t h = 0; h < n_heads; ++h) {
        for (size_t d = 0; d < half; ++d) {
          // Pair (d, d + half) is the complex number x_d + i·x_{d+half}
          // multiplied by e^{i·angle}.
          const size_t o = t * stride + h * head_dim;
          const std::complex<double> z(x0[o + d], x0[o + d + half]);
          const std::complex<double> r =
              z * std::complex<double>(cos[t * half + d], sin[t * half + d]);
          EXPECT_NEAR(x[o + d], r.real(), 1e-6 * (1 + std::abs(r)));
          EXPECT_NEAR(x[o + d + half], r.imag(), 1e-6 * (1 + std::abs(r)));
        }
      }
      // Elements past the heads (the rest of the stride) are untouched.
      for (size_t e = n_heads * head_dim; e < stride; ++e) {
        EXPECT_EQ(x[t * stride + e], x0[t * stride + e]);
      }
    }
  }
}

double GeluTanhPyTorch(double x) {
  // torch.nn.functional.gelu(x, approximate='tanh')
  const double kBeta = std::sqrt(2.0 / M_PI), kKappa = 0.044715;
  return 0.5 * x * (1.0 + std::tanh(kBeta * (x + kKappa * x * x * x)));
}

TEST(OpsReference, GegluIsTanhGeluTimesUp) {
  std::vector<float> gate = RandomVec(257, 31, -6.0f, 6.0f), up = RandomVec(257, 32);
  gate[0] = 0.0f;
  gate[1] = 1.0f;
  gate[2] = -1.0f;
  up[0] = up[1] = up[2] = 1.0f;
  std::vector<float> out(gate.size());
  Scalar().geglu(gate.data(), up.data(), out.data(), gate.size());
  std::vector<float> want(gate.size());
  for (size_t i = 0; i < gate.size(); ++i) {
    want[i] = static_cast<float>(GeluTanhPyTorch(gate[i]) * up[i]);
  }
  EXPECT_CLOSE(out.data(), want.data(), out.size(), 1e-7, 1e-6);
  // Known values (PyTorch float32): gelu_tanh(1) = 0.841192, gelu_tanh(-1) = -0.158808.
  EXPECT_EQ(out[0], 0.0f);
  EXPECT_NEAR(out[1], 0.841192, 1e-6);
  EXPECT_NEAR(out[2], -0.158808, 1e-6);
  // The tanh approximation stays within 1e-3 of the exact (erf) GELU.
  for (size_t i = 0; i < gate.size(); ++i) {
    const double exact = 0.5 * gate[i] * (1.0 + std::erf(gate[i] / std::sqrt(2.0)));
    EXPECT_NEAR(out[i] / up[i], exact, 1e-3);
  }
}

TEST(OpsReference, SwigluIsSiluTimesUp) {
  const std::vector<float> gate = RandomVec(100, 41, -20.0f, 20.0f), up = RandomVec(100, 42);
  std::vector<float> out(100);
  Scalar().swiglu(gate.data(), up.data(), out.data(), 100);
  std::vector<float> want(100);
  for (size_t i = 0; i < 100; ++i) {
    want[i] = static_cast<float>(gate[i] / (1.0 + std::exp(-static_cast<double>(gate[i]))) * up[i]);
  }
  EXPECT_CLOSE(out.data(), want.data(), 100, 1e-7, 1e-6);
}

TEST(OpsReference, SoftmaxSumsToOneAndIsStable) {
  for (size_t n : kSizes) {
    SCOPED_TRACE("n " + std::to_string(n));
    std::vector<float> x = RandomVec(n, 51, -10.0f, 10.0f);
    for (float& v : x) v += 1000.0f;  // naive exp would overflow
    std::vector<float> y = x;
    Scalar().softmax(y.data(), n);
    double sum = 0.0;
    for (size_t i = 0; i < n; ++i) {
      sum += y[i];
      double z = 0.0;
      for (size_t j = 0; j < n; ++j) z += std::exp(static_cast<double>(x[j]) - x[i]);
      EXPECT_NEAR(y[i], 1.0 / z, 1e-6 / z + 1e-7);
    }
    EXPECT_NEAR(sum, 1.0, 1e-5);
  }
}

TEST(OpsReference, SoftcapAddScaleArgmax) {
  const std::vector<float> x0 = RandomVec(33, 61, -100.0f, 100.0f), b = RandomVec(33, 62);
  std::vector<float> x = x0;
  Scalar().softcap(x.data(), 30.0f, 33);
  for (size_t i = 0; i < 33; ++i) {
    EXPECT_NEAR(x[i], 30.0 * std::tanh(x0[i] / 30.0), 1e-5);
    EXPECT_LT(std::fabs(x[i]), 30.0f);
  }
  std::vector<float> s(33);
  Scalar().add(x0.data(), b.data(), s.data(), 33);
  for (size_t i = 0; i < 33; ++i) EXPECT_EQ(s[i], x0[i] + b[i]);
  x = x0;
  Scalar().scale(x.data(), -0.25f, 33);
  for (size_t i = 0; i < 33; ++i) EXPECT_EQ(x[i], x0[i] * -0.25f);
  const float ties[] = {1.0f, 5.0f, -2.0f, 5.0f, 5.0f};
  EXPECT_EQ(Scalar().argmax(ties, 5), 1u);
  EXPECT_EQ(Scalar().argmax(ties, 1), 0u);
  const float neg[] = {-3.0f, -1.0f, -INFINITY, -1.5f};
  EXPECT_EQ(Scalar().argmax(neg, 4), 1u);
}

// ---------------------------------------------------------------------------
// Every table against the scalar reference.

class OpsIsa : public ::testing::TestWithParam<Isa> {
 protected:
  void SetUp() override {
    if (!IsaAvailable(GetParam())) {
      GTEST_SKIP() << IsaName(GetParam()) << " is compiled in but this CPU lacks it";
    }
  }
  const KernelTable& T() const { return GetTable(GetParam()); }
};

TEST_P(OpsIsa, Add) {
  for (size_t n : kSizes) {
    const std::vector<float> a = RandomVec(n, 1), b = RandomVec(n, 2);
    std::vector<float> got(n), want(n);
    T().add(a.data(), b.data(), got.data(), n);
    Scalar().add(a.data(), b.data(), want.data(), n);
    EXPECT_EQ(got, want) << "n " << n;
  }
}

TEST_P(OpsIsa, Scale) {
  for (size_t n : kSizes) {
    std::vector<float> got = RandomVec(n, 3), want = got;
    T().scale(got.data(), 0.37f, n);
    Scalar().scale(want.data(), 0.37f, n);
    EXPECT_EQ(got, want) << "n " << n;
  }
}

TEST_P(OpsIsa, Softcap) {
  for (size_t n : kSizes) {
    for (float cap : {50.0f, 30.0f, 1.0f}) {
      SCOPED_TRACE("n " + std::to_string(n) + " cap " + std::to_string(cap));
      std::vector<float> got = RandomVec(n, 4, -3 * cap, 3 * cap), want = got;
      if (n > 2) got[1] = want[1] = 1e-4f;  // tiny values keep relative precision
      T().softcap(got.data(), cap, n);
      Scalar().softcap(want.data(), cap, n);
      EXPECT_CLOSE(got.data(), want.data(), n, 2e-7, 2e-6);
    }
  }
}

TEST_P(OpsIsa, GegluAndSwiglu) {
  for (size_t n : kSizes) {
    SCOPED_TRACE("n " + std::to_string(n));
    std::vector<float> gate = RandomVec(n, 5, -8.0f, 8.0f);
    const std::vector<float> up = RandomVec(n, 6);
    if (n >= 3) gate[n - 1] = -30.0f, gate[n - 2] = 30.0f, gate[0] = 0.0f;
    std::vector<float> got(n), want(n);
    T().geglu(gate.data(), up.data(), got.data(), n);
    Scalar().geglu(gate.data(), up.data(), want.data(), n);
    EXPECT_CLOSE(got.data(), want.data(), n, 2e-7, 2e-6);
    T().swiglu(gate.data(), up.data(), got.data(), n);
    Scalar().swiglu(gate.data(), up.data(), want.data(), n);
    EXPECT_CLOSE(got.data(), want.data(), n, 2e-7, 2e-6);
    // Output may alias an input.
    std::vector<float> inplace = gate;
    T().swiglu(inplace.data(), up.data(), inplace.data(), n);
    EXPECT_EQ(inplace, got);
  }
}

TEST_P(OpsIsa, Softmax) {
  for (size_t n : kSizes) {
    for (float offset : {0.0f, 500.0f, -500.0f}) {
      SCOPED_TRACE("n " + std::to_string(n) + " offset " + std::to_string(offset));
      std::vector<float> got = RandomVec(n, 7, -15.0f, 15.0f);
      for (float& v : got) v += offset;
      std::vector<float> want = got;
      T().softmax(got.data(), n);
      Scalar().softmax(want.data(), n);
      EXPECT_CLOSE(got.data(), want.data(), n, 1e-8, 2e-6);
    }
  }
}

TEST_P(OpsIsa, Argmax) {
  for (size_t n : kSizes) {
    std::vector<float> x = RandomVec(n, 8);
    EXPECT_EQ(T().argmax(x.data(), n), Scalar().argmax(x.data(), n)) << "n " << n;
    // The maximum in every position, duplicated later (first index wins).
    for (size_t at = 0; at < n; ++at) {
      std::vector<float> y = x;
      y[at] = 10.0f;
      if (at + 5 < n) y[at + 5] = 10.0f;
      ASSERT_EQ(T().argmax(y.data(), n), at) << "n " << n;
    }
  }
  const std::vector<float> all_neg_inf(20, -INFINITY);
  EXPECT_EQ(T().argmax(all_neg_inf.data(), 20), 0u);
}

TEST_P(OpsIsa, ReadSumMatchesScalarOnOddSizes) {
  std::vector<uint64_t> w(1000);
  for (size_t i = 0; i < w.size(); ++i) w[i] = (i + 1) * 0x9E3779B97F4A7C15ull;  // wraps
  for (size_t words : {size_t{0}, size_t{1}, size_t{7}, size_t{8}, size_t{31}, size_t{33},
                       size_t{257}, size_t{1000}}) {
    uint64_t want = 0;
    for (size_t i = 0; i < words; ++i) want += w[i];
    EXPECT_EQ(Scalar().read_sum(w.data(), words * 8), want) << "words " << words;
    EXPECT_EQ(T().read_sum(w.data(), words * 8), want) << "words " << words;
    // Unaligned to the vector width (8-byte aligned only).
    if (words > 1) {
      EXPECT_EQ(T().read_sum(w.data() + 1, (words - 1) * 8), want - w[0]) << "words " << words;
    }
  }
}

TEST_P(OpsIsa, RmsNorm) {
  for (size_t dim : kSizes) {
    for (bool add_one : {false, true}) {
      SCOPED_TRACE("dim " + std::to_string(dim) + (add_one ? " gemma" : " llama"));
      const size_t rows = 3;
      const std::vector<float> x = RandomVec(rows * dim, 9), w = RandomVec(dim, 10, -1.0f, 1.0f);
      std::vector<float> got(rows * dim), want(rows * dim);
      T().rmsnorm(x.data(), w.data(), got.data(), rows, dim, 1e-6f, add_one);
      Scalar().rmsnorm(x.data(), w.data(), want.data(), rows, dim, 1e-6f, add_one);
      EXPECT_CLOSE(got.data(), want.data(), got.size(), 2e-7, 2e-6);
      std::vector<float> inplace = x;
      T().rmsnorm(inplace.data(), w.data(), inplace.data(), rows, dim, 1e-6f, add_one);
      EXPECT_EQ(inplace, got);
    }
  }
}

TEST_P(OpsIsa, Rope) {
  for (size_t head_dim : {32u, 64u, 256u, 6u, 18u, 2u}) {
    for (size_t n_tokens : {1u, 3u, 17u}) {
      SCOPED_TRACE("head_dim " + std::to_string(head_dim) + " tokens " + std::to_string(n_tokens));
      const size_t n_heads = 3, stride = n_heads * head_dim + 7;
      std::vector<float> cos, sin;
      RopeTables(n_tokens, head_dim, 100, &cos, &sin);
      std::vector<float> got = RandomVec(n_tokens * stride, 12), want = got;
      T().rope(got.data(), n_tokens, n_heads, head_dim, stride, cos.data(), sin.data());
      Scalar().rope(want.data(), n_tokens, n_heads, head_dim, stride, cos.data(), sin.data());
      EXPECT_CLOSE(got.data(), want.data(), got.size(), 1e-6, 2e-6);
    }
  }
}

TEST_P(OpsIsa, Attention) {
  for (const AttnCase& c : AttnCases()) {
    SCOPED_TRACE(c.name);
    const AttnData d = MakeAttnData(c, 13);
    const float kSentinel = -777.0f;
    std::vector<float> got(c.n_q * c.n_heads * c.head_dim, kSentinel), want = got;
    T().attention(MakeArgs(c, d, got.data()));
    Scalar().attention(MakeArgs(c, d, want.data()));
    // |v| <= 1, so the tolerance is absolute.
    EXPECT_CLOSE(got.data(), want.data(), got.size(), 3e-6, 0.0);
  }
}

TEST_P(OpsIsa, AttentionSplitByHeadRangesMatchesOneCall) {
  // A thread pool splits heads into contiguous ranges; the pieces must give
  // the same result as one call over all heads.
  AttnCase c = AttnCases()[3];  // ring buffer with a window, GQA 4:2
  c.head_begin = 0;
  c.head_end = c.n_heads;
  const AttnData d = MakeAttnData(c, 17);
  std::vector<float> whole(c.n_q * c.n_heads * c.head_dim), split(whole.size());
  T().attention(MakeArgs(c, d, whole.data()));
  for (size_t h = 0; h < c.n_heads; ++h) {
    AttnCase part = c;
    part.head_begin = h;
    part.head_end = h + 1;
    T().attention(MakeArgs(part, d, split.data()));
  }
  EXPECT_CLOSE(split.data(), whole.data(), whole.size(), 1e-6, 1e-6);
}

std::vector<Isa> CompiledIsas() {
  std::vector<Isa> isas;
  for (int i = 0; i < kNumIsas; ++i) {
    if (IsaCompiledIn(static_cast<Isa>(i))) isas.push_back(static_cast<Isa>(i));
  }
  return isas;
}

INSTANTIATE_TEST_SUITE_P(Tables, OpsIsa, ::testing::ValuesIn(CompiledIsas()),
                         [](const ::testing::TestParamInfo<Isa>& info) {
                           return std::string(IsaName(info.param));
                         });

}  // namespace
}  // namespace qlm::kernels
