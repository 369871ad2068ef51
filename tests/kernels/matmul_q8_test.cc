// The int8-activation matmul path (quantize_acts + matmul_q8) for int8 and q4
// weights, every ISA available here, odd sizes, activation blocks of 32 and
// (q4 with groups of 64 or 128) 64:
//  * quantize_acts of every table produces exactly the scalar codes, scales
//    and sums, and the codes reconstruct x within half a step;
//  * every table's matmul_q8 matches the scalar q8 reference within 2e-5 of
//    ‖x_i‖·‖w_n‖ (same integer dot products, float combination reordered);
//  * the scalar q8 path matches the f32-activation path within 1e-2 of
//    ‖x_i‖·‖w_n‖: that is the cost of 8-bit activations (each x is off by at
//    most amax_block / 254; typical errors here are ~1e-3).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "base/error.h"
#include "kernels/registry.h"
#include "quant/format.h"
#include "quant/quantize.h"
#include "tests/kernels/matmul_test_util.h"

namespace qlm::kernels {
namespace {

using test::FormatCase;
using test::MakeWeight;
using test::RandomVector;
using test::RowNorms;

constexpr double kSimdTol = 2e-5;
constexpr double kQ8VsF32Tol = 1e-2;

// Up to 19 groups of 32: every remainder of the 8-group steps of the
// decode kernels (and 64/128-input q4 chunks), plus two full steps.
const size_t kKs[] = {1, 7, 31, 33, 63, 65, 100, 129, 190, 200, 257, 300, 480, 600};
const size_t kNs[] = {1, 3, 17};
const size_t kMs[] = {1, 3, 17};

struct Q8Buffers {
  std::vector<int8_t> q;
  std::vector<float> scales;
  std::vector<int32_t> sums;
  Q8Acts acts;
};

const size_t kBlocks[] = {kQ8ActBlock, kQ8ActBlockWide};

Q8Buffers QuantizeWith(const KernelTable& t, const std::vector<float>& x, size_t m, size_t k,
                       const int32_t* perm, size_t block = kQ8ActBlock) {
  Q8Buffers b;
  b.q.assign(Q8ActsQuantBytes(m, k), 99);  // garbage that must be overwritten
  // Sized for blocks of 32 (what Q8ActsBlockCount gives); blocks of 64 use
  // the first half, so the rest is cut off to make the comparisons exact.
  const size_t blocks = m * ((k + 63) / 64 * 64) / block;
  b.scales.assign(Q8ActsBlockCount(m, k), -1.0f);
  b.sums.assign(Q8ActsBlockCount(m, k), 12345);
  t.quantize_acts(x.data(), m, k, perm, block, b.q.data(), b.scales.data(), b.sums.data());
  for (size_t j = blocks; j < b.scales.size(); ++j) {
    EXPECT_EQ(b.scales[j], -1.0f) << "written past the blocks, j=" << j;
    EXPECT_EQ(b.sums[j], 12345) << "written past the blocks, j=" << j;
  }
  b.scales.resize(blocks);
  b.sums.resize(blocks);
  b.acts = Q8Acts{b.q.data(), b.scales.data(), b.sums.data(), m, k, (k + 63) / 64 * 64, block};
  return b;
}

// The activation blocks a weight can take: 32, and 64 where its groups are
// multiples of 64 (q4 with groups of 64 or 128).
std::vector<size_t> BlocksFor(const QTensor& w) {
  std::vector<size_t> v = {kQ8ActBlock};
  if (w.desc.group_size % kQ8ActBlockWide == 0) v.push_back(kQ8ActBlockWide);
  return v;
}

double MaxRelError(const std::vector<float>& a, const std::vector<float>& b,
                   const std::vector<double>& xnorm, const std::vector<double>& wnorm, size_t m,
                   size_t n) {
  double worst = 0.0;
  for (size_t i = 0; i < m; ++i) {
    for (size_t c = 0; c < n; ++c) {
      const double d = std::fabs(static_cast<double>(a[i * n + c]) - b[i * n + c]);
      if (!(d == d)) return std::numeric_limits<double>::infinity();
      worst = std::max(worst, d / (xnorm[i] * wnorm[c] + 1e-30));
    }
  }
  return worst;
}

std::vector<FormatCase> Q8Cases() {
  std::vector<FormatCase> v;
  for (const FormatCase& fc : test::AllFormatCases()) {
    if (fc.format == Format::kInt8 || fc.format == Format::kQ4) v.push_back(fc);
  }
  return v;
}

TEST(Q8ActsTest, BufferSizes) {
  EXPECT_EQ(Q8ActsQuantBytes(1, 1), 64u);
  EXPECT_EQ(Q8ActsQuantBytes(3, 64), 192u);
  EXPECT_EQ(Q8ActsQuantBytes(2, 65), 256u);
  EXPECT_EQ(Q8ActsBlockCount(1, 1), 2u);
  EXPECT_EQ(Q8ActsBlockCount(3, 2304), 3u * 72u);
  EXPECT_EQ(Q8ActsBlockCount(2, 65), 8u);
}

TEST(QuantizeActsTest, ScalarCodesReconstructX) {
  std::mt19937 rng(1);
  const KernelTable& scalar = GetTable(Isa::kScalar);
  for (size_t block : kBlocks) {
    for (size_t k : kKs) {
      for (bool use_perm : {false, true}) {
        SCOPED_TRACE("block=" + std::to_string(block) + " K=" + std::to_string(k) +
                     (use_perm ? " perm" : ""));
        const size_t m = 3, kp = (k + 63) / 64 * 64, nb = kp / block;
        std::vector<float> x = RandomVector(m * k, rng, -3.0f, 3.0f);
        x[0] = 0.0f;
        std::vector<int32_t> perm(k);
        for (size_t j = 0; j < k; ++j) perm[j] = static_cast<int32_t>(k - 1 - j);
        const Q8Buffers b = QuantizeWith(scalar, x, m, k, use_perm ? perm.data() : nullptr, block);
        for (size_t i = 0; i < m; ++i) {
          for (size_t blk = 0; blk < nb; ++blk) {
            const float s = b.scales[i * nb + blk];
            float amax = 0.0f;
            int32_t sum = 0;
            for (size_t j = 0; j < block; ++j) {
              const size_t c = blk * block + j;
              const int q = b.q[i * kp + c];
              sum += q;
              EXPECT_LE(std::abs(q), 127);
              if (c >= k) {
                EXPECT_EQ(q, 0) << "padding must be zero, c=" << c;
                continue;
              }
              const float xv = x[i * k + (use_perm ? perm[c] : c)];
              amax = std::max(amax, std::fabs(xv));
              EXPECT_LE(std::fabs(xv - s * q), 0.5f * s * (1 + 1e-5f) + 1e-30f) << "c=" << c;
            }
            EXPECT_EQ(s, amax / 127.0f) << "the scale is the whole block's amax / 127";
            EXPECT_EQ(sum, b.sums[i * nb + blk]);
          }
        }
      }
    }
  }
}

TEST(QuantizeActsTest, EveryIsaGivesTheScalarCodes) {
  std::mt19937 rng(2);
  const KernelTable& scalar = GetTable(Isa::kScalar);
  for (Isa isa : test::SimdIsas()) {
    SCOPED_TRACE(IsaName(isa));
    for (size_t block : kBlocks) {
      for (size_t k : kKs) {
        for (bool use_perm : {false, true}) {
          SCOPED_TRACE("block=" + std::to_string(block) + " K=" + std::to_string(k) +
                       (use_perm ? " perm" : ""));
          const size_t m = 3;
          std::vector<float> x = RandomVector(m * k, rng, -5.0f, 5.0f);
          // An all-zero block (of 32 and, for k >= 64, of 64).
          std::fill(x.begin(), x.begin() + std::min<size_t>(k, 70), 0.0f);
          std::vector<int32_t> perm(k);
          for (size_t j = 0; j < k; ++j) perm[j] = static_cast<int32_t>((j * 7 + 3) % k);
          if (k % 7 == 0) std::iota(perm.begin(), perm.end(), 0);  // keep it a permutation
          const int32_t* p = use_perm ? perm.data() : nullptr;
          const Q8Buffers want = QuantizeWith(scalar, x, m, k, p, block);
          const Q8Buffers got = QuantizeWith(GetTable(isa), x, m, k, p, block);
          EXPECT_EQ(got.q, want.q);
          EXPECT_EQ(got.scales, want.scales);
          EXPECT_EQ(got.sums, want.sums);
        }
      }
    }
  }
}

class MatmulQ8Test : public ::testing::TestWithParam<FormatCase> {};

TEST_P(MatmulQ8Test, EveryIsaMatchesScalarAndScalarMatchesF32Path) {
  const FormatCase& fc = GetParam();
  const int f = static_cast<int>(fc.format);
  const KernelTable& scalar = GetTable(Isa::kScalar);
  std::mt19937 rng(17);
  for (size_t k : kKs) {
    for (size_t n : kNs) {
      for (size_t m : kMs) {
        SCOPED_TRACE("K=" + std::to_string(k) + " N=" + std::to_string(n) +
                     " M=" + std::to_string(m));
        const test::Weight w = MakeWeight(fc, n, k, rng);
        const QTensor wv = w.q.view();
        const std::vector<float> x = RandomVector(m * k, rng);
        const auto xn = RowNorms(x, m, k);
        const auto wn = test::DequantizedRowNorms(wv);
        std::vector<float> y_f32(m * n);
        scalar.matmul[f](wv, x.data(), m, y_f32.data(), 0, n);
        for (size_t block : BlocksFor(wv)) {
          SCOPED_TRACE("block=" + std::to_string(block));
          std::vector<float> y_q8(m * n, std::nanf(""));
          const Q8Buffers xq = QuantizeWith(scalar, x, m, k, wv.perm, block);
          scalar.matmul_q8[f](wv, xq.acts, y_q8.data(), 0, n);
          EXPECT_LE(MaxRelError(y_q8, y_f32, xn, wn, m, n), kQ8VsF32Tol);
          for (Isa isa : test::SimdIsas()) {
            SCOPED_TRACE(IsaName(isa));
            std::vector<float> got(m * n, std::nanf(""));
            GetTable(isa).matmul_q8[f](wv, xq.acts, got.data(), 0, n);
            EXPECT_LE(MaxRelError(got, y_q8, xn, wn, m, n), kSimdTol);
          }
        }
      }
    }
  }
}

TEST_P(MatmulQ8Test, SubRangesWriteOnlyTheirColumns) {
  const FormatCase& fc = GetParam();
  const int f = static_cast<int>(fc.format);
  std::mt19937 rng(8);
  const size_t k = 257, n = 17;
  const test::Weight w = MakeWeight(fc, n, k, rng);
  for (Isa isa : test::AllIsas()) {
    SCOPED_TRACE(IsaName(isa));
    const KernelTable& t = GetTable(isa);
    for (size_t m : {size_t{1}, size_t{6}}) {
      const std::vector<float> x = RandomVector(m * k, rng);
      const Q8Buffers xq = QuantizeWith(t, x, m, k, w.q.view().perm);
      std::vector<float> full(m * n);
      t.matmul_q8[f](w.q.view(), xq.acts, full.data(), 0, n);
      const std::pair<size_t, size_t> ranges[] = {{0, 1}, {3, 12}, {16, 17}, {1, 17}, {4, 4}};
      for (auto [b, e] : ranges) {
        SCOPED_TRACE("range [" + std::to_string(b) + ", " + std::to_string(e) +
                     ") m=" + std::to_string(m));
        std::vector<float> y(m * n, -12345.0f);
        t.matmul_q8[f](w.q.view(), xq.acts, y.data(), b, e);
        for (size_t i = 0; i < m; ++i) {
          for (size_t c = 0; c < n; ++c) {
            const float want = (c >= b && c < e) ? full[i * n + c] : -12345.0f;
            EXPECT_EQ(y[i * n + c], want) << "i=" << i << " n=" << c;
          }
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Formats, MatmulQ8Test, ::testing::ValuesIn(Q8Cases()),
                         [](const auto& info) { return info.param.name; });

// Larger M and K than the odd-size sweep: several act-row tiles and K
// chunks, with a partial last weight-row tile.
TEST(MatmulQ8TiledTest, LargerShapesMatchScalar) {
  std::mt19937 rng(21);
  const KernelTable& scalar = GetTable(Isa::kScalar);
  for (const FormatCase& fc : Q8Cases()) {
    SCOPED_TRACE(fc.name);
    const int f = static_cast<int>(fc.format);
    const size_t m = 37, n = 7, k = 1000;
    const test::Weight w = MakeWeight(fc, n, k, rng);
    const std::vector<float> x = RandomVector(m * k, rng);
    const auto xn = RowNorms(x, m, k);
    const auto wn = test::DequantizedRowNorms(w.q.view());
    for (size_t block : BlocksFor(w.q.view())) {
      SCOPED_TRACE("block=" + std::to_string(block));
      const Q8Buffers xq = QuantizeWith(scalar, x, m, k, w.q.view().perm, block);
      std::vector<float> want(m * n);
      scalar.matmul_q8[f](w.q.view(), xq.acts, want.data(), 0, n);
      for (Isa isa : test::SimdIsas()) {
        SCOPED_TRACE(IsaName(isa));
        std::vector<float> got(m * n, std::nanf(""));
        GetTable(isa).matmul_q8[f](w.q.view(), xq.acts, got.data(), 0, n);
        EXPECT_LE(MaxRelError(got, want, xn, wn, m, n), kSimdTol);
      }
    }
  }
}

// The q4 decode that prefetches non-temporally (Zen 5's default, tested on
// any CPU with VNNI) differs from the other only in its prefetch hint: the
// same bits, on short and long rows, and within the tolerance of the scalar
// reference.
TEST(MatmulQ8NtaTest, Q4DecodeSameBitsAsTheDefault) {
  std::mt19937 rng(27);
  const KernelTable& scalar = GetTable(Isa::kScalar);
  const int f = static_cast<int>(Format::kQ4);
  for (const FormatCase& fc : Q8Cases()) {
    if (fc.format != Format::kQ4) continue;
    for (Isa isa : test::SimdIsas()) {
      const MatmulQ8Fn fn = TableWithNtaPrefetch(isa).matmul_q8[f];
      if (fn == nullptr) continue;  // no VNNI
      for (size_t k : {size_t{300}, size_t{4500}}) {
        SCOPED_TRACE(std::string(IsaName(isa)) + " " + fc.name + " K=" + std::to_string(k));
        const size_t n = 7;
        const test::Weight w = MakeWeight(fc, n, k, rng);
        const std::vector<float> x = RandomVector(k, rng);
        const Q8Buffers xq = QuantizeWith(scalar, x, 1, k, w.q.view().perm, kQ8ActBlock);
        std::vector<float> want(n), ref(n), got(n, std::nanf(""));
        GetTable(isa).matmul_q8[f](w.q.view(), xq.acts, want.data(), 0, n);
        scalar.matmul_q8[f](w.q.view(), xq.acts, ref.data(), 0, n);
        fn(w.q.view(), xq.acts, got.data(), 0, n);
        EXPECT_EQ(got, want);
        EXPECT_LE(
            MaxRelError(got, ref, RowNorms(x, 1, k), test::DequantizedRowNorms(w.q.view()), 1, n),
            kSimdTol);
      }
    }
  }
}

TEST(MatmulQ8Test, TablesProvideIntegerPathsOnlyForInt8AndQ4) {
  for (Isa isa : test::AllIsas()) {
    const KernelTable& t = GetTable(isa);
    EXPECT_NE(t.quantize_acts, nullptr) << IsaName(isa);
    for (int f = 0; f < kNumFormats; ++f) {
      const bool integer =
          f == static_cast<int>(Format::kInt8) || f == static_cast<int>(Format::kQ4);
      EXPECT_EQ(t.matmul_q8[f] != nullptr, integer) << IsaName(isa) << " format " << f;
      EXPECT_NE(t.matmul[f], nullptr) << IsaName(isa) << " format " << f;
    }
  }
}

TEST(MatmulQ8Test, MismatchedActivationsThrow) {
  std::mt19937 rng(4);
  const test::Weight w = MakeWeight(Q8Cases()[0], 4, 100, rng);
  const std::vector<float> x = RandomVector(200, rng);
  for (Isa isa : test::AllIsas()) {
    SCOPED_TRACE(IsaName(isa));
    const KernelTable& t = GetTable(isa);
    const Q8Buffers xq = QuantizeWith(t, x, 1, 200, nullptr);  // K = 200, weight has 100
    std::vector<float> y(4);
    EXPECT_THROW(t.matmul_q8[static_cast<int>(Format::kInt8)](w.q.view(), xq.acts, y.data(), 0, 4),
                 Error);
    EXPECT_THROW(t.matmul_q8[static_cast<int>(Format::kQ4)](w.q.view(), xq.acts, y.data(), 0, 4),
                 Error);
  }
}

// Blocks of 64 are for prefill of q4 weights whose groups hold whole blocks;
// everything else keeps blocks of 32.
TEST(Q8ActBlockTest, WideBlocksOnlyForQ4PrefillWithGroupsOf64Or128) {
  const auto desc = [](Format f, uint32_t gs) { return MakeTensorDesc(f, 8, 256, gs); };
  EXPECT_EQ(Q8ActBlockFor(desc(Format::kQ4, 128), 2), kQ8ActBlockWide);
  EXPECT_EQ(Q8ActBlockFor(desc(Format::kQ4, 64), 17), kQ8ActBlockWide);
  EXPECT_EQ(Q8ActBlockFor(desc(Format::kQ4, 128), 1), kQ8ActBlock);
  EXPECT_EQ(Q8ActBlockFor(desc(Format::kQ4, 32), 17), kQ8ActBlock);
  EXPECT_EQ(Q8ActBlockFor(desc(Format::kInt8, 0), 17), kQ8ActBlock);
}

TEST(Q8ActBlockTest, BadBlocksThrow) {
  std::mt19937 rng(5);
  const size_t k = 200, m = 2;
  const std::vector<float> x = RandomVector(m * k, rng);
  std::vector<int8_t> q(Q8ActsQuantBytes(m, k));
  std::vector<float> scales(Q8ActsBlockCount(m, k));
  std::vector<int32_t> sums(Q8ActsBlockCount(m, k));
  const test::Weight int8 = MakeWeight(Q8Cases()[0], 4, k, rng);
  const test::Weight q4_g32 = MakeWeight({"q4_g32", Format::kQ4, 32, false}, 4, k, rng);
  ASSERT_EQ(int8.q.view().desc.format, Format::kInt8);
  for (Isa isa : test::AllIsas()) {
    SCOPED_TRACE(IsaName(isa));
    const KernelTable& t = GetTable(isa);
    for (size_t bad : {size_t{0}, size_t{16}, size_t{48}, size_t{128}}) {
      EXPECT_THROW(
          t.quantize_acts(x.data(), m, k, nullptr, bad, q.data(), scales.data(), sums.data()),
          Error)
          << "block " << bad;
    }
    const Q8Buffers wide = QuantizeWith(t, x, m, k, nullptr, kQ8ActBlockWide);
    std::vector<float> y(m * 4);
    // int8 groups and q4 groups of 32 are narrower than a block of 64.
    EXPECT_THROW(
        t.matmul_q8[static_cast<int>(Format::kInt8)](int8.q.view(), wide.acts, y.data(), 0, 4),
        Error);
    EXPECT_THROW(
        t.matmul_q8[static_cast<int>(Format::kQ4)](q4_g32.q.view(), wide.acts, y.data(), 0, 4),
        Error);
    Q8Acts odd = wide.acts;
    odd.block = 48;
    const test::Weight q4 = MakeWeight({"q4_g128", Format::kQ4, 128, true}, 4, k, rng);
    EXPECT_THROW(t.matmul_q8[static_cast<int>(Format::kQ4)](q4.q.view(), odd, y.data(), 0, 4),
                 Error);
  }
}

}  // namespace
}  // namespace qlm::kernels
