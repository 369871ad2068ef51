// The kernel registry: detection, selection (request, QLM_KERNELS, best),
// clear errors, fallback bookkeeping and one-time thread-safe table building.
#include "kernels/registry.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "base/error.h"

namespace qlm::kernels {
namespace {

// Sets (or clears, for nullptr) QLM_KERNELS for the scope of a test.
class ScopedKernelsEnv {
 public:
  explicit ScopedKernelsEnv(const char* value) {
    if (const char* old = std::getenv("QLM_KERNELS")) saved_ = old, had_ = true;
    if (value) {
      setenv("QLM_KERNELS", value, 1);
    } else {
      unsetenv("QLM_KERNELS");
    }
  }
  ~ScopedKernelsEnv() {
    if (had_) {
      setenv("QLM_KERNELS", saved_.c_str(), 1);
    } else {
      unsetenv("QLM_KERNELS");
    }
  }

 private:
  std::string saved_;
  bool had_ = false;
};

bool HasFeature(const std::string& features, const std::string& name) {
  return (" " + features + " ").find(" " + name + " ") != std::string::npos;
}

// An ISA of the other processor family: never available here.
Isa ForeignIsa() {
#if defined(__aarch64__)
  return Isa::kAvx2;
#else
  return Isa::kNeon;
#endif
}

constexpr Op kNonMatmulOps[] = {Op::kAttention, Op::kRmsNorm, Op::kRope,   Op::kGeglu,
                                Op::kSwiglu,    Op::kSoftmax, Op::kAdd,    Op::kScale,
                                Op::kSoftcap,   Op::kArgmax,  Op::kReadSum};

TEST(Registry, NamesAreStable) {
  EXPECT_STREQ(IsaName(Isa::kScalar), "scalar");
  EXPECT_STREQ(IsaName(Isa::kAvx2), "avx2");
  EXPECT_STREQ(IsaName(Isa::kAvx512), "avx512");
  EXPECT_STREQ(IsaName(Isa::kNeon), "neon");
  std::set<std::string> names;
  for (int i = 0; i < kNumOps; ++i) names.insert(OpName(static_cast<Op>(i)));
  EXPECT_EQ(names.size(), static_cast<size_t>(kNumOps));
  EXPECT_EQ(names.count("unknown"), 0u);
}

TEST(Registry, CompiledInTablesMatchTheProcessorFamily) {
  EXPECT_TRUE(IsaCompiledIn(Isa::kScalar));
  EXPECT_TRUE(IsaAvailable(Isa::kScalar));
#if defined(__x86_64__)
  EXPECT_TRUE(IsaCompiledIn(Isa::kAvx2));
  EXPECT_TRUE(IsaCompiledIn(Isa::kAvx512));
  EXPECT_FALSE(IsaCompiledIn(Isa::kNeon));
#elif defined(__aarch64__)
  EXPECT_TRUE(IsaCompiledIn(Isa::kNeon));
  EXPECT_TRUE(IsaAvailable(Isa::kNeon));
  EXPECT_FALSE(IsaCompiledIn(Isa::kAvx2));
  EXPECT_FALSE(IsaCompiledIn(Isa::kAvx512));
#endif
  EXPECT_FALSE(IsaAvailable(ForeignIsa()));
}

TEST(Registry, BestIsaFollowsTheCpuFeatures) {
  const std::string f = CpuFeatureString();
#if defined(__x86_64__)
  const bool avx512 = HasFeature(f, "avx512f") && HasFeature(f, "avx512bw") &&
                      HasFeature(f, "avx512dq") && HasFeature(f, "avx512vl");
  const bool avx2 = HasFeature(f, "avx2") && HasFeature(f, "fma") && HasFeature(f, "f16c");
  EXPECT_EQ(IsaAvailable(Isa::kAvx512), avx2 && avx512) << f;
  EXPECT_EQ(IsaAvailable(Isa::kAvx2), avx2) << f;
  const Isa expected = avx2 && avx512 ? Isa::kAvx512 : avx2 ? Isa::kAvx2 : Isa::kScalar;
  EXPECT_EQ(BestIsa(), expected) << f;
#elif defined(__aarch64__)
  EXPECT_TRUE(HasFeature(f, "neon")) << f;
  EXPECT_EQ(BestIsa(), Isa::kNeon);
#endif
}

// The development machine of this project has AVX-512: the registry must pick
// it there (and NEON on aarch64). QLM_EXPECT_ISA (optional) pins the
// expectation on other machines.
TEST(Registry, ExpectedIsaIsChosen) {
  const char* expect = std::getenv("QLM_EXPECT_ISA");
  if (expect == nullptr) {
#if defined(__aarch64__)
    expect = "neon";
#else
    const std::string f = CpuFeatureString();
    if (!HasFeature(f, "avx512f")) GTEST_SKIP() << "CPU without AVX-512: " << f;
    expect = "avx512";
#endif
  }
  ScopedKernelsEnv env(nullptr);
  EXPECT_STREQ(IsaName(SelectTable().isa), expect);
  EXPECT_STREQ(IsaName(BestIsa()), expect);
}

TEST(Registry, SelectByNameAndEnvironment) {
  {
    ScopedKernelsEnv env(nullptr);
    EXPECT_EQ(SelectTable().isa, BestIsa());
    EXPECT_EQ(&SelectTable(), &GetTable(BestIsa()));
  }
  {
    ScopedKernelsEnv env("");
    EXPECT_EQ(SelectTable().isa, BestIsa());
  }
  {
    ScopedKernelsEnv env("scalar");
    EXPECT_EQ(SelectTable().isa, Isa::kScalar);
    EXPECT_EQ(&SelectTable(), &GetTable(Isa::kScalar));
    // An explicit request (--kernels) wins over the environment.
    EXPECT_EQ(SelectTable(IsaName(BestIsa())).isa, BestIsa());
  }
  for (int i = 0; i < kNumIsas; ++i) {
    const Isa isa = static_cast<Isa>(i);
    if (!IsaAvailable(isa)) continue;
    EXPECT_EQ(SelectTable(IsaName(isa)).isa, isa);
    ScopedKernelsEnv env(IsaName(isa));
    EXPECT_EQ(SelectTable().isa, isa);
  }
}

TEST(Registry, UnknownNameIsAUsageError) {
  try {
    SelectTable("sse9");
    FAIL() << "no error for an unknown table";
  } catch (const UsageError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("sse9"), std::string::npos) << msg;
    EXPECT_NE(msg.find("CPU features"), std::string::npos) << msg;
    EXPECT_NE(msg.find("scalar"), std::string::npos) << msg;
  }
  ScopedKernelsEnv env("AVX512");  // names are case-sensitive
  try {
    SelectTable();
    FAIL() << "no error for an unknown QLM_KERNELS value";
  } catch (const UsageError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("QLM_KERNELS"), std::string::npos) << msg;
    EXPECT_NE(msg.find("AVX512"), std::string::npos) << msg;
  }
}

TEST(Registry, UnavailableIsaIsAUsageError) {
  const Isa foreign = ForeignIsa();
  EXPECT_THROW(GetTable(foreign), UsageError);
  try {
    SelectTable(IsaName(foreign));
    FAIL() << "no error for an unavailable table";
  } catch (const UsageError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(IsaName(foreign)), std::string::npos) << msg;
    EXPECT_NE(msg.find("CPU features: " + CpuFeatureString()), std::string::npos) << msg;
  }
  ScopedKernelsEnv env(IsaName(foreign));
  EXPECT_THROW(SelectTable(), UsageError);
  // Every ISA the CPU lacks is refused the same way.
  for (int i = 0; i < kNumIsas; ++i) {
    const Isa isa = static_cast<Isa>(i);
    if (!IsaAvailable(isa)) {
      EXPECT_THROW(GetTable(isa), UsageError) << IsaName(isa);
    }
  }
}

TEST(Registry, EveryTableIsCompleteAndRecordsProviders) {
  const KernelTable& scalar = GetTable(Isa::kScalar);
  EXPECT_EQ(scalar.isa, Isa::kScalar);
  for (int i = 0; i < kNumOps; ++i) EXPECT_EQ(scalar.provider[i], Isa::kScalar) << i;
  for (int i = 0; i < kNumIsas; ++i) {
    const Isa isa = static_cast<Isa>(i);
    if (!IsaAvailable(isa)) continue;
    SCOPED_TRACE(IsaName(isa));
    const KernelTable& t = GetTable(isa);
    EXPECT_EQ(t.isa, isa);
    // Entries the scalar table has are never lost by a fallback chain.
    for (int f = 0; f < kNumFormats; ++f) {
      if (scalar.matmul[f]) {
        EXPECT_NE(t.matmul[f], nullptr) << f;
      }
      if (scalar.matmul_q8[f]) {
        EXPECT_NE(t.matmul_q8[f], nullptr) << f;
      }
    }
    if (scalar.quantize_acts) {
      EXPECT_NE(t.quantize_acts, nullptr);
    }
    for (Op op : kNonMatmulOps) {
      EXPECT_NE(OpEntry(t, op), nullptr) << OpName(op);
      // Every ISA specialises the non-matmul ops, so it provides them itself.
      EXPECT_EQ(t.provider[static_cast<int>(op)], isa) << OpName(op);
      if (isa != Isa::kScalar) {
        EXPECT_NE(OpEntry(t, op), OpEntry(scalar, op)) << OpName(op);
      }
    }
    // Providers only come from the table's own fallback chain.
    for (int op = 0; op < kNumOps; ++op) {
      const Isa p = t.provider[op];
      if (isa == Isa::kScalar) {
        EXPECT_EQ(p, Isa::kScalar);
      }
      if (isa == Isa::kAvx2) {
        EXPECT_TRUE(p == Isa::kScalar || p == Isa::kAvx2);
      }
      if (isa == Isa::kAvx512) {
        EXPECT_NE(p, Isa::kNeon);
      }
      if (isa == Isa::kNeon) {
        EXPECT_TRUE(p == Isa::kScalar || p == Isa::kNeon);
      }
    }
  }
}

TEST(Registry, TablesAreBuiltOnceAndThreadSafe) {
  std::vector<const KernelTable*> seen(8 * kNumIsas, nullptr);
  std::vector<std::thread> threads;
  for (size_t t = 0; t < 8; ++t) {
    threads.emplace_back([&seen, t] {
      for (int i = 0; i < kNumIsas; ++i) {
        const Isa isa = static_cast<Isa>(i);
        if (IsaAvailable(isa)) seen[t * kNumIsas + i] = &GetTable(isa);
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int i = 0; i < kNumIsas; ++i) {
    const Isa isa = static_cast<Isa>(i);
    if (!IsaAvailable(isa)) continue;
    for (size_t t = 0; t < 8; ++t) EXPECT_EQ(seen[t * kNumIsas + i], &GetTable(isa));
  }
}

}  // namespace
}  // namespace qlm::kernels
