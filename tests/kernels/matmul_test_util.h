// Shared helpers for the matmul tests: the weight-format cases, random data
// and norms for the tolerances.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "kernels/registry.h"
#include "quant/format.h"
#include "quant/quantize.h"

namespace qlm::kernels::test {

struct FormatCase {
  std::string name;
  Format format;
  uint32_t group_size = 0;
  bool asymmetric = true;
  bool perm = false;
};

// gtest prints the case by name, not as bytes.
inline void PrintTo(const FormatCase& fc, std::ostream* os) { *os << fc.name; }

inline std::vector<FormatCase> AllFormatCases() {
  return {
      {"f32", Format::kF32},
      {"bf16", Format::kBF16},
      {"int8", Format::kInt8},
      {"q4_g32_sym", Format::kQ4, 32, false},
      {"q4_g32_asym", Format::kQ4, 32, true},
      {"q4_g64_sym", Format::kQ4, 64, false},
      {"q4_g64_asym", Format::kQ4, 64, true},
      {"q4_g128_sym", Format::kQ4, 128, false},
      {"q4_g128_asym", Format::kQ4, 128, true},
      {"q4_g128_asym_perm", Format::kQ4, 128, true, true},
      {"q4_g32_sym_perm", Format::kQ4, 32, false, true},
      {"sfp8", Format::kSFP8},
  };
}

// Every ISA this machine can run, scalar first; and the same without scalar.
inline std::vector<Isa> AllIsas() {
  std::vector<Isa> v;
  for (int i = 0; i < kNumIsas; ++i) {
    if (IsaAvailable(static_cast<Isa>(i))) v.push_back(static_cast<Isa>(i));
  }
  return v;
}
inline std::vector<Isa> SimdIsas() {
  std::vector<Isa> v = AllIsas();
  v.erase(std::remove(v.begin(), v.end(), Isa::kScalar), v.end());
  return v;
}

inline std::vector<float> RandomVector(size_t n, std::mt19937& rng, float lo = -1.0f,
                                       float hi = 1.0f) {
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (float& f : v) f = u(rng);
  return v;
}

struct Weight {
  QuantizedTensor q;
  std::vector<float> f32;  // the original values, [n, k]
};

// Random [n, k] weights (each row with its own offset and spread, so q4 zero
// points vary), quantized per the case; act-order cases get a random perm.
inline Weight MakeWeight(const FormatCase& fc, size_t n, size_t k, std::mt19937& rng) {
  Weight w;
  w.f32.resize(n * k);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (size_t r = 0; r < n; ++r) {
    const float offset = 0.4f * u(rng), spread = 0.5f + std::fabs(u(rng));
    for (size_t j = 0; j < k; ++j) w.f32[r * k + j] = offset + spread * u(rng);
  }
  std::vector<int32_t> perm;
  QuantizeOptions opt;
  opt.group_size = fc.group_size;
  opt.asymmetric = fc.asymmetric;
  if (fc.perm) {
    perm.resize(k);
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng);
    opt.perm = perm.data();
  }
  w.q = Quantize(fc.format, w.f32.data(), n, k, opt);
  return w;
}

inline std::vector<double> RowNorms(const std::vector<float>& x, size_t m, size_t k) {
  std::vector<double> v(m);
  for (size_t i = 0; i < m; ++i) {
    double s = 0.0;
    for (size_t j = 0; j < k; ++j) s += static_cast<double>(x[i * k + j]) * x[i * k + j];
    v[i] = std::sqrt(s);
  }
  return v;
}

inline std::vector<double> DequantizedRowNorms(const QTensor& t) {
  const size_t n = t.desc.rows, k = t.desc.cols;
  std::vector<float> row(k);
  std::vector<double> v(n);
  for (size_t r = 0; r < n; ++r) {
    DequantizeRow(t, r, row.data());
    double s = 0.0;
    for (float f : row) s += static_cast<double>(f) * f;
    v[r] = std::sqrt(s);
  }
  return v;
}

}  // namespace qlm::kernels::test
