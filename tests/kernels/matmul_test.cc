// Matmul with f32 activations, every weight format × every ISA available here:
//  1. the scalar reference against a plain double-precision dot product of
//     DequantizeRow output (the format's own decoder), and
//  2. every SIMD table against the scalar reference,
// on odd sizes (K not a multiple of the vector width or of the group, N = 1,
// M = 1, 3, 17), output sub-ranges, the tiled (M, K blocked) path, concurrent
// calls on disjoint ranges, and bad calls.
//
// Tolerances are relative to ‖x_i‖·‖w_n‖ (Cauchy-Schwarz bounds |y| by it):
//  * reference vs double dot of DequantizeRow: 1e-6 (same decoded weights,
//    both sum in double: only the final f32 rounding differs);
//  * SIMD vs reference: 2e-5 (f32 accumulation in a different order; a
//    single wrong weight among K <= 300 moves y by ~1/K of the bound, far
//    above this).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <numeric>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "base/error.h"
#include "kernels/registry.h"
#include "quant/format.h"
#include "quant/half.h"
#include "quant/quantize.h"
#include "tests/kernels/matmul_test_util.h"

namespace qlm::kernels {
namespace {

using test::FormatCase;
using test::MakeWeight;
using test::RandomVector;
using test::RowNorms;

constexpr double kRefTol = 1e-6;
constexpr double kSimdTol = 2e-5;

const size_t kKs[] = {1, 7, 31, 33, 63, 65, 100, 129, 257, 300};
const size_t kNs[] = {1, 3, 17};
const size_t kMs[] = {1, 3, 17};

// An activation as the format's matmul multiplies it: sfp8 rounds x to bf16
// (see MatmulFn), the others take it as is.
float ActIn(const FormatCase& fc, float x) {
  return fc.format == Format::kSFP8 ? RoundToBF16(x) : x;
}

// max_{i,n in range} |a − b| / (‖x_i‖‖w_n‖); NaN counts as infinitely wrong.
double MaxRelError(const std::vector<float>& a, const std::vector<float>& b,
                   const std::vector<double>& xnorm, const std::vector<double>& wnorm, size_t m,
                   size_t n_total, size_t n_begin, size_t n_end) {
  double worst = 0.0;
  for (size_t i = 0; i < m; ++i) {
    for (size_t n = n_begin; n < n_end; ++n) {
      const double d = std::fabs(static_cast<double>(a[i * n_total + n]) - b[i * n_total + n]);
      const double bound = xnorm[i] * wnorm[n] + 1e-30;
      if (!(d <= bound * 1e30)) return std::numeric_limits<double>::infinity();
      worst = std::max(worst, d / bound);
    }
  }
  return worst;
}

// One decode (m = 1) of all n rows of w by a variant entry `fn`: its
// output and its MaxRelError against the scalar reference. For the per-CPU
// variants (TableWithNtaPrefetch, TableWithFullWidthF32), whose rows can be
// longer than EveryIsaMatchesScalarReference's.
struct VariantDecode {
  std::vector<float> y;
  double err_vs_scalar = 0.0;
};
VariantDecode DecodeWithVariant(MatmulFn fn, Format f, const test::Weight& w,
                                const std::vector<float>& x, size_t n) {
  const size_t k = x.size();
  VariantDecode r;
  r.y.assign(n, std::nanf(""));
  std::vector<float> ref(n);
  GetTable(Isa::kScalar).matmul[static_cast<int>(f)](w.q.view(), x.data(), 1, ref.data(), 0, n);
  fn(w.q.view(), x.data(), 1, r.y.data(), 0, n);
  r.err_vs_scalar =
      MaxRelError(r.y, ref, RowNorms(x, 1, k), test::DequantizedRowNorms(w.q.view()), 1, n, 0, n);
  return r;
}

// The same decode as DecodeWithVariant's, called on consecutive row ranges
// of `piece` rows (the last one shorter): each row must come out as whole.
std::vector<float> DecodeInPieces(MatmulFn fn, const test::Weight& w, const std::vector<float>& x,
                                  size_t n, size_t piece) {
  std::vector<float> y(n, std::nanf(""));
  for (size_t b = 0; b < n; b += piece) {
    fn(w.q.view(), x.data(), 1, y.data(), b, std::min(n, b + piece));
  }
  return y;
}

class MatmulTest : public ::testing::TestWithParam<FormatCase> {};

TEST_P(MatmulTest, ScalarReferenceMatchesDequantizedDot) {
  const FormatCase& fc = GetParam();
  const KernelTable& scalar = GetTable(Isa::kScalar);
  std::mt19937 rng(1234);
  for (size_t k : kKs) {
    for (size_t n : kNs) {
      for (size_t m : kMs) {
        SCOPED_TRACE("K=" + std::to_string(k) + " N=" + std::to_string(n) +
                     " M=" + std::to_string(m));
        const test::Weight w = MakeWeight(fc, n, k, rng);
        const std::vector<float> x = RandomVector(m * k, rng);
        std::vector<float> y(m * n, std::nanf("")), want(m * n);
        scalar.matmul[static_cast<int>(fc.format)](w.q.view(), x.data(), m, y.data(), 0, n);
        std::vector<float> row(k);
        for (size_t r = 0; r < n; ++r) {
          DequantizeRow(w.q.view(), r, row.data());
          for (size_t i = 0; i < m; ++i) {
            double acc = 0.0;
            for (size_t j = 0; j < k; ++j)
              acc += static_cast<double>(row[j]) * ActIn(fc, x[i * k + j]);
            want[i * n + r] = static_cast<float>(acc);
          }
        }
        const auto xn = RowNorms(x, m, k);
        const auto wn = test::DequantizedRowNorms(w.q.view());
        EXPECT_LE(MaxRelError(y, want, xn, wn, m, n, 0, n), kRefTol);
      }
    }
  }
}

TEST_P(MatmulTest, EveryIsaMatchesScalarReference) {
  const FormatCase& fc = GetParam();
  const KernelTable& scalar = GetTable(Isa::kScalar);
  for (Isa isa : test::SimdIsas()) {
    SCOPED_TRACE(IsaName(isa));
    const KernelTable& table = GetTable(isa);
    std::mt19937 rng(99);
    for (size_t k : kKs) {
      for (size_t n : kNs) {
        for (size_t m : kMs) {
          SCOPED_TRACE("K=" + std::to_string(k) + " N=" + std::to_string(n) +
                       " M=" + std::to_string(m));
          const test::Weight w = MakeWeight(fc, n, k, rng);
          const std::vector<float> x = RandomVector(m * k, rng);
          std::vector<float> want(m * n), got(m * n, std::nanf(""));
          scalar.matmul[static_cast<int>(fc.format)](w.q.view(), x.data(), m, want.data(), 0, n);
          table.matmul[static_cast<int>(fc.format)](w.q.view(), x.data(), m, got.data(), 0, n);
          const auto xn = RowNorms(x, m, k);
          const auto wn = test::DequantizedRowNorms(w.q.view());
          EXPECT_LE(MaxRelError(got, want, xn, wn, m, n, 0, n), kSimdTol);
        }
      }
    }
  }
}

// Only [n_begin, n_end) is written; the result there equals the full call's.
TEST_P(MatmulTest, SubRangesWriteOnlyTheirColumns) {
  const FormatCase& fc = GetParam();
  std::mt19937 rng(7);
  const size_t k = 129, n = 17;
  const test::Weight w = MakeWeight(fc, n, k, rng);
  for (Isa isa : test::AllIsas()) {
    SCOPED_TRACE(IsaName(isa));
    const MatmulFn fn = GetTable(isa).matmul[static_cast<int>(fc.format)];
    for (size_t m : {size_t{1}, size_t{3}, size_t{6}}) {
      const std::vector<float> x = RandomVector(m * k, rng);
      std::vector<float> full(m * n);
      fn(w.q.view(), x.data(), m, full.data(), 0, n);
      const std::pair<size_t, size_t> ranges[] = {{0, 1},   {5, 6},  {3, 12},
                                                  {16, 17}, {1, 17}, {7, 7}};
      for (auto [b, e] : ranges) {
        SCOPED_TRACE("range [" + std::to_string(b) + ", " + std::to_string(e) +
                     ") m=" + std::to_string(m));
        std::vector<float> y(m * n, -12345.0f);
        fn(w.q.view(), x.data(), m, y.data(), b, e);
        for (size_t i = 0; i < m; ++i) {
          for (size_t c = 0; c < n; ++c) {
            if (c >= b && c < e) {
              EXPECT_EQ(y[i * n + c], full[i * n + c]) << "i=" << i << " n=" << c;
            } else {
              EXPECT_EQ(y[i * n + c], -12345.0f)
                  << "wrote outside the range: i=" << i << " n=" << c;
            }
          }
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Formats, MatmulTest, ::testing::ValuesIn(test::AllFormatCases()),
                         [](const auto& info) { return info.param.name; });

// Shapes that cross the tiled path's K block (1024 inputs) and M block (64
// rows), with a partial last panel of rows; a long decode row; and more rows
// than one 32-row tile of the VNNI int8 prefill, with a partial second tile.
TEST(MatmulTiledTest, BlockedShapesMatchScalarReference) {
  const KernelTable& scalar = GetTable(Isa::kScalar);
  std::mt19937 rng(5);
  struct Shape {
    size_t m, n, k;
  };
  const Shape shapes[] = {{70, 6, 1100}, {2, 5, 2300}, {65, 3, 64}, {1, 5, 9001}, {9, 40, 600}};
  for (const FormatCase& fc : test::AllFormatCases()) {
    SCOPED_TRACE(fc.name);
    for (const Shape& s : shapes) {
      SCOPED_TRACE("M=" + std::to_string(s.m) + " N=" + std::to_string(s.n) +
                   " K=" + std::to_string(s.k));
      const test::Weight w = MakeWeight(fc, s.n, s.k, rng);
      const std::vector<float> x = RandomVector(s.m * s.k, rng);
      std::vector<float> want(s.m * s.n);
      scalar.matmul[static_cast<int>(fc.format)](w.q.view(), x.data(), s.m, want.data(), 0, s.n);
      const auto xn = RowNorms(x, s.m, s.k);
      const auto wn = test::DequantizedRowNorms(w.q.view());
      for (Isa isa : test::SimdIsas()) {
        SCOPED_TRACE(IsaName(isa));
        std::vector<float> got(s.m * s.n, std::nanf(""));
        GetTable(isa).matmul[static_cast<int>(fc.format)](w.q.view(), x.data(), s.m, got.data(), 0,
                                                          s.n);
        EXPECT_LE(MaxRelError(got, want, xn, wn, s.m, s.n, 0, s.n), kSimdTol);
      }
    }
  }
}

// Two threads on disjoint halves at once (per-thread scratch only) give the
// same result as one call.
TEST(MatmulThreadsTest, DisjointRangesConcurrently) {
  std::mt19937 rng(11);
  const size_t n = 64, k = 300;
  for (const FormatCase& fc : test::AllFormatCases()) {
    SCOPED_TRACE(fc.name);
    const test::Weight w = MakeWeight(fc, n, k, rng);
    for (Isa isa : test::AllIsas()) {
      SCOPED_TRACE(IsaName(isa));
      const MatmulFn fn = GetTable(isa).matmul[static_cast<int>(fc.format)];
      for (size_t m : {size_t{1}, size_t{5}}) {
        const std::vector<float> x = RandomVector(m * k, rng);
        std::vector<float> one(m * n), two(m * n);
        fn(w.q.view(), x.data(), m, one.data(), 0, n);
        std::thread a([&] {
          for (int rep = 0; rep < 20; ++rep) fn(w.q.view(), x.data(), m, two.data(), 0, n / 2);
        });
        std::thread b([&] {
          for (int rep = 0; rep < 20; ++rep) fn(w.q.view(), x.data(), m, two.data(), n / 2, n);
        });
        a.join();
        b.join();
        EXPECT_EQ(one, two);
      }
    }
  }
}

// A row's result does not depend on which rows share its call: the f32,
// bf16 and int8 decode reads two rows at a time (half the range apart), so a
// row computed beside another must equal the same row computed alone, bit
// for bit (what makes results identical for any thread count), and the VNNI
// int8 prefill puts rows in vector lanes, so the same holds for every row
// offset within a tile.
TEST(MatmulThreadsTest, RowResultsIndependentOfTheSplit) {
  std::mt19937 rng(13);
  struct Shape {
    size_t m, n, k;
  };
  for (const Shape& s : {Shape{1, 7, 4500}, Shape{1, 37, 300}, Shape{6, 37, 300}}) {
    for (const FormatCase& fc : test::AllFormatCases()) {
      SCOPED_TRACE(fc.name + " M=" + std::to_string(s.m) + " K=" + std::to_string(s.k));
      const test::Weight w = MakeWeight(fc, s.n, s.k, rng);
      const std::vector<float> x = RandomVector(s.m * s.k, rng);
      for (Isa isa : test::AllIsas()) {
        SCOPED_TRACE(IsaName(isa));
        const MatmulFn fn = GetTable(isa).matmul[static_cast<int>(fc.format)];
        std::vector<float> full(s.m * s.n), split(s.m * s.n);
        fn(w.q.view(), x.data(), s.m, full.data(), 0, s.n);
        // Odd-length pieces shift every row's position in its pair or tile.
        for (size_t b = 0; b < s.n; b += 3) {
          fn(w.q.view(), x.data(), s.m, split.data(), b, std::min(s.n, b + 3));
        }
        EXPECT_EQ(full, split);
      }
    }
  }
}

// The prefetchnta variant of the f32/bf16 decode (Zen 5's default, tested
// here on any CPU) differs from the other only in its prefetch hints: the
// same bits, for long rows (K >= 4096, where it applies) and short ones.
// Both are also checked against the scalar reference, since the long rows
// are longer than EveryIsaMatchesScalarReference's (and on Zen 5 GetTable
// already holds the nta entries, so the bit comparison is with itself;
// on Intel the f32 default is the 512-bit decode, compared by reference).
TEST(MatmulNtaLongRowsTest, SameBitsAsTheDefaultEntries) {
  std::mt19937 rng(21);
  for (Isa isa : test::SimdIsas()) {
    const KernelTable nta = TableWithNtaPrefetch(isa);
    for (const FormatCase& fc : test::AllFormatCases()) {
      if (fc.format != Format::kF32 && fc.format != Format::kBF16) continue;  // no variant
      const MatmulFn fn = nta.matmul[static_cast<int>(fc.format)];
      if (fn == nullptr) continue;  // scalar, neon
      for (size_t k : {size_t{300}, size_t{4096}, size_t{4500}}) {
        SCOPED_TRACE(std::string(IsaName(isa)) + " " + fc.name + " K=" + std::to_string(k));
        const size_t n = 7;
        const test::Weight w = MakeWeight(fc, n, k, rng);
        const std::vector<float> x = RandomVector(k, rng);
        std::vector<float> want(n);
        GetTable(isa).matmul[static_cast<int>(fc.format)](w.q.view(), x.data(), 1, want.data(), 0,
                                                          n);
        const VariantDecode got = DecodeWithVariant(fn, fc.format, w, x, n);
        // On Intel the default f32 decode is the 512-bit one (other sums):
        // there only the reference comparison applies.
        const bool default_full_width =
            fc.format == Format::kF32 &&
            GetTable(isa).matmul[static_cast<int>(Format::kF32)] ==
                TableWithFullWidthF32(isa).matmul[static_cast<int>(Format::kF32)];
        if (!default_full_width) {
          EXPECT_EQ(got.y, want);
        }
        EXPECT_LE(got.err_vs_scalar, kSimdTol);
      }
    }
  }
}

// The case of format f in test::AllFormatCases(), by value (the list is a
// fresh vector each call); nullopt if it has none.
std::optional<FormatCase> CaseOf(Format f) {
  for (const FormatCase& fc : test::AllFormatCases()) {
    if (fc.format == f) return fc;
  }
  return std::nullopt;
}

// fn, a decode entry of fc's format, on n rows of each K in ks: within
// kSimdTol of the scalar reference, and split into row ranges of each size
// in `pieces`: the same bits as whole.
void ExpectMatchesScalarAndSplits(Isa isa, MatmulFn fn, const FormatCase& fc,
                                  std::initializer_list<size_t> ks, size_t n,
                                  std::initializer_list<size_t> pieces, std::mt19937& rng) {
  for (size_t k : ks) {
    SCOPED_TRACE(std::string(IsaName(isa)) + " K=" + std::to_string(k));
    const test::Weight w = MakeWeight(fc, n, k, rng);
    const std::vector<float> x = RandomVector(k, rng);
    const VariantDecode got = DecodeWithVariant(fn, fc.format, w, x, n);
    EXPECT_LE(got.err_vs_scalar, kSimdTol);
    for (size_t piece : pieces) {
      EXPECT_EQ(got.y, DecodeInPieces(fn, w, x, n, piece)) << "pieces of " << piece;
    }
  }
}

// The 512-bit f32 decode (Intel's default, tested here on any AVX-512 CPU)
// against the scalar reference on odd and long rows, and split into odd row
// ranges (which pair other rows): the same bits as whole.
TEST(MatmulFullWidthF32Test, MatchesScalarReferenceAndSplits) {
  std::mt19937 rng(23);
  const std::optional<FormatCase> f32 = CaseOf(Format::kF32);
  ASSERT_TRUE(f32.has_value());
  for (Isa isa : test::SimdIsas()) {
    const MatmulFn fn = TableWithFullWidthF32(isa).matmul[static_cast<int>(Format::kF32)];
    if (fn == nullptr) continue;  // no variant: avx2, neon
    ExpectMatchesScalarAndSplits(isa, fn, *f32, {1, 17, 33, 300, 4096, 4500}, 7, {3}, rng);
  }
}

// Long sfp8 rows decode in K blocks (GemvKBlocked in matmul-inl.h): one,
// two and three blocks with a partial last chunk, against the scalar
// reference, and split into odd row ranges (the prefetch cursor crosses
// range ends): the same bits as whole.
TEST(MatmulKBlockedSfp8Test, MatchesScalarReferenceAndSplits) {
  std::mt19937 rng(29);
  const std::optional<FormatCase> sfp8 = CaseOf(Format::kSFP8);
  ASSERT_TRUE(sfp8.has_value());
  for (Isa isa : test::SimdIsas()) {
    const MatmulFn fn = GetTable(isa).matmul[static_cast<int>(Format::kSFP8)];
    ExpectMatchesScalarAndSplits(isa, fn, *sfp8, {4096, 4500, 9216 + 17}, 11, {1, 3, 5}, rng);
  }
}

// The sfp8 decode that CPUs without AVX512_BF16 get (f32 FMAs), where this
// CPU's table has the vdpbf16ps one instead: as the K-blocked test above.
TEST(MatmulF32Sfp8DecodeTest, MatchesScalarReferenceAndSplits) {
  std::mt19937 rng(31);
  const std::optional<FormatCase> sfp8 = CaseOf(Format::kSFP8);
  ASSERT_TRUE(sfp8.has_value());
  for (Isa isa : test::SimdIsas()) {
    const MatmulFn fn = TableWithF32Sfp8Decode(isa).matmul[static_cast<int>(Format::kSFP8)];
    if (fn == nullptr) continue;  // the table has no other sfp8 entry
    ExpectMatchesScalarAndSplits(isa, fn, *sfp8, {1, 65, 300, 4096, 9216 + 17}, 7, {1, 3}, rng);
  }
}

// sfp8 multiplies bf16(x) in every table and for every m: with x = ±(1 +
// 3·2⁻⁹), signed like the weights so no product cancels another, bf16
// rounds each |x| up to 1 + 2⁻⁷, which moves y by ~2⁻⁹ of y (~1.5e-3 of its
// bound, ~75× the SIMD tolerance), while the rounded dot matches within it.
TEST(MatmulSfp8Test, EveryTableMultipliesBf16RoundedActivations) {
  std::mt19937 rng(37);
  const std::optional<FormatCase> sfp8 = CaseOf(Format::kSFP8);
  ASSERT_TRUE(sfp8.has_value());
  const size_t k = 4500, n = 5;
  const test::Weight w = MakeWeight(*sfp8, n, k, rng);
  std::vector<float> row(k);
  DequantizeRow(w.q.view(), 0, row.data());
  const float kMag = 1.0f + 3.0f / 512.0f;
  for (size_t m : {1, 3}) {
    std::vector<float> x(m * k);
    for (size_t i = 0; i < m; ++i) {
      for (size_t j = 0; j < k; ++j) {
        x[i * k + j] = row[j] < 0.0f ? -kMag : kMag;
      }
    }
    double exact = 0.0, rounded = 0.0;
    for (size_t j = 0; j < k; ++j) {
      exact += static_cast<double>(row[j]) * x[j];
      rounded += static_cast<double>(row[j]) * RoundToBF16(x[j]);
    }
    const double bound = RowNorms(x, m, k)[0] * test::DequantizedRowNorms(w.q.view())[0];
    const double gap = std::fabs(rounded - exact) / bound;
    ASSERT_GT(gap, 50 * kSimdTol) << "the test could not tell the two apart";
    for (Isa isa : test::AllIsas()) {
      SCOPED_TRACE(std::string(IsaName(isa)) + " M=" + std::to_string(m));
      for (const KernelTable& t : {GetTable(isa), TableWithF32Sfp8Decode(isa)}) {
        const MatmulFn fn = t.matmul[static_cast<int>(Format::kSFP8)];
        if (fn == nullptr) continue;
        std::vector<float> y(m * n, std::nanf(""));
        fn(w.q.view(), x.data(), m, y.data(), 0, n);
        for (size_t i = 0; i < m; ++i) {
          EXPECT_LE(std::fabs(y[i * n] - rounded), kSimdTol * bound) << "row " << i;
        }
      }
    }
  }
}

TEST(MatmulErrorsTest, BadCallsThrowNamingTheProblem) {
  std::mt19937 rng(3);
  const test::Weight w = MakeWeight(test::AllFormatCases()[1], 4, 40, rng);  // bf16
  const std::vector<float> x(40, 1.0f);
  std::vector<float> y(8);
  for (Isa isa : test::AllIsas()) {
    SCOPED_TRACE(IsaName(isa));
    const KernelTable& t = GetTable(isa);
    // Wrong format for the entry.
    EXPECT_THROW(t.matmul[static_cast<int>(Format::kF32)](w.q.view(), x.data(), 1, y.data(), 0, 4),
                 Error);
    // Output range past the rows.
    try {
      t.matmul[static_cast<int>(Format::kBF16)](w.q.view(), x.data(), 1, y.data(), 2, 5);
      ADD_FAILURE() << "no error for range [2, 5) of 4 rows";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("[2, 5)"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace qlm::kernels
