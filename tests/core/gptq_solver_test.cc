// The GPTQ solver: Hessian accumulation, equivalence with round-to-nearest
// when H = I, lower output error than RTN on correlated inputs, act-order.
#include "core/gptq_solver.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "base/error.h"
#include "core/thread_pool.h"
#include "kernels/registry.h"
#include "quant/quantize.h"

namespace qlm {
namespace {

std::vector<float> Gaussian(size_t n, uint32_t seed, float sd = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.0f, sd);
  std::vector<float> v(n);
  for (auto& x : v) x = g(rng);
  return v;
}

// Calibration-like inputs: a low-rank signal (rank 24) plus a little noise,
// so the k features are strongly correlated, as activations are.
std::vector<float> CorrelatedInputs(size_t n, size_t k, uint32_t seed) {
  constexpr size_t kRank = 24;
  const std::vector<float> z = Gaussian(n * kRank, seed);
  const std::vector<float> a = Gaussian(kRank * k, seed + 1);
  const std::vector<float> noise = Gaussian(n * k, seed + 2, 0.1f);
  std::vector<float> x(n * k, 0.0f);
  for (size_t t = 0; t < n; ++t) {
    for (size_t i = 0; i < k; ++i) {
      float s = noise[t * k + i];
      for (size_t j = 0; j < kRank; ++j) s += z[t * kRank + j] * a[j * k + i];
      x[t * k + i] = s;
    }
  }
  return x;
}

// Σ over samples and outputs of ((W − Ŵ)·x)².
double OutputError(const std::vector<float>& w, const QuantizedTensor& q,
                   const std::vector<float>& x, size_t n, size_t rows, size_t k) {
  std::vector<float> row(k);
  double err = 0;
  for (size_t r = 0; r < rows; ++r) {
    DequantizeRow(q.view(), r, row.data());
    for (size_t t = 0; t < n; ++t) {
      double s = 0;
      for (size_t j = 0; j < k; ++j) s += double(w[r * k + j] - row[j]) * x[t * k + j];
      err += s * s;
    }
  }
  return err;
}

TEST(GptqSolver, HessianMatchesDirectSum) {
  const size_t k = 37, n1 = 20, n2 = 13;
  const std::vector<float> x = Gaussian((n1 + n2) * k, 3);
  HessianAccumulator acc(k);
  ThreadPool pool(2);
  acc.Add(x.data(), n1, kernels::SelectTable(), &pool);
  acc.Add(x.data() + n1 * k, n2, kernels::SelectTable(), nullptr);
  EXPECT_EQ(acc.samples(), n1 + n2);
  const std::vector<float> h = acc.Hessian();
  for (size_t i = 0; i < k; ++i) {
    for (size_t j = 0; j < k; ++j) {
      double s = 0;
      for (size_t t = 0; t < n1 + n2; ++t) s += double(x[t * k + i]) * x[t * k + j];
      s *= 2.0 / double(n1 + n2);
      ASSERT_NEAR(h[i * k + j], s, 1e-4 * (1 + std::fabs(s))) << i << "," << j;
    }
  }
  EXPECT_THROW(HessianAccumulator(5).Hessian(), Error);
}

TEST(GptqSolver, IdentityHessianIsRoundToNearest) {
  // With H = I no error is propagated: GPTQ must reproduce RTN bit for bit,
  // which pins its scale/zero-point rule to docs/formats.md's.
  for (const uint32_t g : {32u, 128u}) {
    for (const bool asym : {true, false}) {
      const size_t rows = 9, cols = 100;  // padded to 128
      const std::vector<float> w = Gaussian(rows * cols, 5 + g, 0.05f);
      std::vector<float> h(cols * cols, 0.0f);
      for (size_t i = 0; i < cols; ++i) h[i * cols + i] = 1.0f;
      GptqOptions o;
      o.group_size = g;
      o.asymmetric = asym;
      const QuantizedTensor got = GptqQuantize(w.data(), rows, cols, h.data(), o, nullptr);
      QuantizeOptions qo;
      qo.group_size = g;
      qo.asymmetric = asym;
      const QuantizedTensor want = Quantize(Format::kQ4, w.data(), rows, cols, qo);
      ASSERT_EQ(got.desc.total_bytes, want.desc.total_bytes);
      EXPECT_EQ(std::memcmp(got.blob.data(), want.blob.data(), want.desc.total_bytes), 0)
          << "group " << g << (asym ? " asym" : " sym");
    }
  }
}

TEST(GptqSolver, ClipSearchNeverWorseThanMinMaxPerGroup) {
  // With H = I nothing propagates, so each group's searched range (which
  // includes the plain min/max one) must give an error Σ|w − ŵ|^2.4 no
  // larger than round-to-nearest's, and smaller somewhere.
  const size_t rows = 16, cols = 256;
  std::vector<float> w = Gaussian(rows * cols, 21, 0.05f);
  for (size_t r = 0; r < rows; ++r) w[r * cols + r] = 0.4f;  // an outlier per row
  std::vector<float> h(cols * cols, 0.0f);
  for (size_t i = 0; i < cols; ++i) h[i * cols + i] = 1.0f;
  GptqOptions o;
  o.clip_search = true;
  const QuantizedTensor got = GptqQuantize(w.data(), rows, cols, h.data(), o, nullptr);
  const QuantizedTensor rtn = Quantize(Format::kQ4, w.data(), rows, cols);
  std::vector<float> a(cols), b(cols);
  double total_a = 0, total_b = 0;
  for (size_t r = 0; r < rows; ++r) {
    DequantizeRow(got.view(), r, a.data());
    DequantizeRow(rtn.view(), r, b.data());
    for (size_t g = 0; g < cols / 128; ++g) {
      double ea = 0, eb = 0;
      for (size_t j = g * 128; j < (g + 1) * 128; ++j) {
        ea += std::pow(std::fabs(double(w[r * cols + j]) - a[j]), 2.4);
        eb += std::pow(std::fabs(double(w[r * cols + j]) - b[j]), 2.4);
      }
      EXPECT_LE(ea, eb * (1 + 1e-4)) << "row " << r << " group " << g;
      total_a += ea;
      total_b += eb;
    }
  }
  EXPECT_LT(total_a, 0.98 * total_b);
}

TEST(GptqSolver, LowerOutputErrorThanRtn) {
  const size_t rows = 48, k = 192, n = 600;
  const std::vector<float> x = CorrelatedInputs(n, k, 11);
  const std::vector<float> w = Gaussian(rows * k, 12, 0.05f);
  HessianAccumulator acc(k);
  acc.Add(x.data(), n, kernels::SelectTable(), nullptr);
  const std::vector<float> h = acc.Hessian();
  QuantizeOptions qo;
  qo.group_size = 64;
  const QuantizedTensor rtn = Quantize(Format::kQ4, w.data(), rows, k, qo);
  const double e_rtn = OutputError(w, rtn, x, n, rows, k);
  ThreadPool pool(2);
  for (const bool act_order : {false, true}) {
    GptqOptions o;
    o.group_size = 64;
    o.act_order = act_order;
    GptqStats st;
    const QuantizedTensor q = GptqQuantize(w.data(), rows, k, h.data(), o, &pool, &st);
    const double e = OutputError(w, q, x, n, rows, k);
    EXPECT_LT(e, 0.6 * e_rtn) << "act_order " << act_order << ": GPTQ " << e << " vs RTN " << e_rtn;
    EXPECT_GT(st.loss, 0.0);
    EXPECT_EQ(q.desc.has_perm, act_order);
    if (act_order) {
      // Stored order visits inputs by decreasing H_ii.
      const QTensor v = q.view();
      for (size_t j = 1; j < k; ++j) {
        EXPECT_GE(h[size_t(v.perm[j - 1]) * (k + 1)], h[size_t(v.perm[j]) * (k + 1)]);
      }
    }
    // Threads do not change the result.
    const QuantizedTensor q1 = GptqQuantize(w.data(), rows, k, h.data(), o, nullptr);
    EXPECT_EQ(std::memcmp(q.blob.data(), q1.blob.data(), q.desc.total_bytes), 0);
  }
}

TEST(GptqSolver, DeadInputsAndErrors) {
  const size_t rows = 8, k = 64;
  std::vector<float> w = Gaussian(rows * k, 2, 0.1f);
  std::vector<float> h(k * k, 0.0f);
  for (size_t i = 0; i < k; ++i) h[i * k + i] = i == 5 ? 0.0f : 2.0f;
  GptqStats st;
  const QuantizedTensor q = GptqQuantize(w.data(), rows, k, h.data(), {}, nullptr, &st);
  EXPECT_EQ(st.dead_inputs, 1u);
  std::vector<float> row(k);
  DequantizeRow(q.view(), 3, row.data());
  EXPECT_EQ(row[5], 0.0f) << "a dead input's weight is zeroed";

  GptqOptions bad;
  bad.group_size = 48;
  EXPECT_THROW(GptqQuantize(w.data(), rows, k, h.data(), bad, nullptr), Error);
  std::vector<float> neg(k * k, 0.0f);
  for (size_t i = 0; i < k; ++i) neg[i * k + i] = -1.0f;  // negative definite
  EXPECT_THROW(GptqQuantize(w.data(), rows, k, neg.data(), {}, nullptr), Error);
  w[7] = NAN;
  EXPECT_THROW(GptqQuantize(w.data(), rows, k, h.data(), {}, nullptr), Error);
}

}  // namespace
}  // namespace qlm
