// Attention over a quantized KV cache (AttentionArgs::kv_type bf16, int8,
// sfp8). Two layers of checks:
//  * KvScalar: the scalar reference on codes equals the f32 reference on the
//    same rows decoded independently here (BF16ToF32, scale · int8,
//    scale · Sfp8Decode): decoding on the fly computes exactly that.
//  * KvIsa/<isa>: every table against the scalar reference, for every KV type,
//    on odd head_dim and n_slots that are not multiples of any vector width
//    (atol 3e-6: outputs are convex combinations of V rows with |v| <= 1).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/registry.h"
#include "quant/half.h"
#include "quant/sfp8.h"

namespace qlm::kernels {
namespace {

struct Case {
  std::string name;
  size_t n_q, n_heads, n_kv_heads, head_dim, capacity, n_slots;
  int32_t q_pos0;
  float softcap;
  int32_t window;
  size_t head_begin, head_end;
  int32_t filled;  // slots [0, filled) hold positions 0.., the rest empty
};

std::vector<Case> Cases() {
  return {
      {"decode_mha_hd33", 1, 1, 1, 33, 40, 37, 29, 0.0f, 0, 0, 1, 30},
      {"decode_gqa42_softcap_hd7", 1, 4, 2, 7, 23, 21, 20, 2.0f, 0, 0, 4, 21},
      {"prefill_mqa_hd64", 7, 4, 1, 64, 20, 17, 10, 0.0f, 0, 0, 4, 17},
      {"window_subrange_hd18", 3, 4, 2, 18, 50, 43, 40, 30.0f, 12, 1, 3, 43},
      {"prefill_n9_hd256", 9, 2, 1, 256, 70, 61, 52, 0.0f, 0, 0, 2, 61},
      {"gqa84_hd5", 2, 8, 4, 5, 24, 19, 17, 0.0f, 0, 3, 7, 19},
  };
}

// A K or V cache in one KvType: codes plus row scales, and the same rows
// decoded to f32 independently of the kernels.
struct Cache {
  std::vector<uint8_t> codes;
  std::vector<float> scale;
  std::vector<float> decoded;
};

Cache Encode(const std::vector<float>& x, size_t rows, size_t hd, KvType t) {
  Cache c;
  c.codes.resize(rows * hd * KvElemBytes(t));
  c.scale.assign(rows, 0.0f);
  c.decoded.resize(rows * hd);
  for (size_t r = 0; r < rows; ++r) {
    const float* xr = x.data() + r * hd;
    uint8_t* cr = c.codes.data() + r * hd * KvElemBytes(t);
    float amax = 0.0f;
    for (size_t d = 0; d < hd; ++d) amax = std::max(amax, std::fabs(xr[d]));
    for (size_t d = 0; d < hd; ++d) {
      float& out = c.decoded[r * hd + d];
      switch (t) {
        case KvType::kF32:
          std::memcpy(cr + 4 * d, xr + d, 4);
          out = xr[d];
          break;
        case KvType::kBF16: {
          const uint16_t b = F32ToBF16(xr[d]);
          std::memcpy(cr + 2 * d, &b, 2);
          out = BF16ToF32(b);
          break;
        }
        case KvType::kInt8: {
          c.scale[r] = amax / 127.0f;
          const int8_t q = static_cast<int8_t>(std::lround(xr[d] / c.scale[r]));
          cr[d] = static_cast<uint8_t>(q);
          out = c.scale[r] * static_cast<float>(q);
          break;
        }
        case KvType::kSFP8:
          c.scale[r] = amax / 1.875f;
          cr[d] = Sfp8Encode(xr[d] / c.scale[r]);
          out = c.scale[r] * Sfp8Decode(cr[d]);
          break;
      }
    }
  }
  return c;
}

std::vector<float> RandomVec(size_t n, uint32_t seed, float lo, float hi) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

struct Data {
  std::vector<float> q;
  std::vector<int32_t> slot_pos;
  Cache k, v;
};

Data MakeData(const Case& c, KvType t, uint32_t seed) {
  Data d;
  d.q = RandomVec(c.n_q * c.n_heads * c.head_dim, seed, -2.0f, 2.0f);
  const size_t rows = c.n_kv_heads * c.capacity;
  d.k = Encode(RandomVec(rows * c.head_dim, seed + 1, -2.0f, 2.0f), rows, c.head_dim, t);
  d.v = Encode(RandomVec(rows * c.head_dim, seed + 2, -1.0f, 1.0f), rows, c.head_dim, t);
  d.slot_pos.assign(c.capacity, -1);
  for (int32_t s = 0; s < c.filled; ++s) d.slot_pos[static_cast<size_t>(s)] = s;
  // Shuffle so slot order is not position order.
  std::mt19937 rng(seed + 3);
  std::shuffle(d.slot_pos.begin(), d.slot_pos.begin() + static_cast<long>(c.n_slots), rng);
  return d;
}

AttentionArgs Args(const Case& c, const Data& d, KvType t, bool decoded, float* out) {
  AttentionArgs a;
  a.q = d.q.data();
  a.out = out;
  a.slot_pos = d.slot_pos.data();
  a.n_slots = c.n_slots;
  a.capacity = c.capacity;
  a.n_q = c.n_q;
  a.n_heads = c.n_heads;
  a.n_kv_heads = c.n_kv_heads;
  a.head_dim = c.head_dim;
  a.q_pos0 = c.q_pos0;
  a.scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  a.softcap = c.softcap;
  a.window = c.window;
  a.head_begin = c.head_begin;
  a.head_end = c.head_end;
  if (decoded) {
    a.k = d.k.decoded.data();
    a.v = d.v.decoded.data();
    return a;
  }
  a.kv_type = t;
  if (t == KvType::kF32) {
    a.k = reinterpret_cast<const float*>(d.k.codes.data());
    a.v = reinterpret_cast<const float*>(d.v.codes.data());
  }
  a.k_codes = d.k.codes.data();
  a.v_codes = d.v.codes.data();
  a.k_scale = d.k.scale.data();
  a.v_scale = d.v.scale.data();
  return a;
}

double MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double e = std::fabs(static_cast<double>(a[i]) - b[i]);
    m = std::isfinite(e) ? std::max(m, e) : INFINITY;
  }
  return m;
}

constexpr KvType kTypes[] = {KvType::kF32, KvType::kBF16, KvType::kInt8, KvType::kSFP8};

TEST(KvScalar, QuantizedCacheEqualsDecodedF32Cache) {
  const KernelTable& s = GetTable(Isa::kScalar);
  for (KvType t : kTypes) {
    for (const Case& c : Cases()) {
      SCOPED_TRACE(std::string(KvTypeName(t)) + " " + c.name);
      const Data d = MakeData(c, t, 11);
      const float kSentinel = 55.0f;
      std::vector<float> got(c.n_q * c.n_heads * c.head_dim, kSentinel), want = got;
      s.attention(Args(c, d, t, /*decoded=*/false, got.data()));
      s.attention(Args(c, d, t, /*decoded=*/true, want.data()));
      EXPECT_LE(MaxAbsDiff(got, want), 1e-6);
      // Heads outside [head_begin, head_end) untouched.
      for (size_t i = 0; i < c.n_q; ++i) {
        for (size_t h = 0; h < c.n_heads; ++h) {
          if (h >= c.head_begin && h < c.head_end) continue;
          ASSERT_EQ(got[(i * c.n_heads + h) * c.head_dim], kSentinel);
        }
      }
    }
  }
}

TEST(KvScalar, QuantizationErrorIsSmall) {
  // Sanity of the formats themselves: attention over int8 / bf16 / sfp8 rows
  // stays close to attention over the exact f32 rows.
  const KernelTable& s = GetTable(Isa::kScalar);
  const Case c = Cases()[2];
  const Data exact = MakeData(c, KvType::kF32, 5);
  std::vector<float> want(c.n_q * c.n_heads * c.head_dim);
  s.attention(Args(c, exact, KvType::kF32, false, want.data()));
  for (KvType t : {KvType::kBF16, KvType::kInt8, KvType::kSFP8}) {
    const Data d = MakeData(c, t, 5);
    std::vector<float> got(want.size());
    s.attention(Args(c, d, t, false, got.data()));
    EXPECT_LE(MaxAbsDiff(got, want), t == KvType::kSFP8 ? 0.08 : 0.02) << KvTypeName(t);
  }
}

class KvIsa : public ::testing::TestWithParam<Isa> {
 protected:
  void SetUp() override {
    if (!IsaAvailable(GetParam())) GTEST_SKIP() << IsaName(GetParam()) << " not on this CPU";
  }
};

TEST_P(KvIsa, EveryKvTypeMatchesScalar) {
  const KernelTable& t = GetTable(GetParam());
  const KernelTable& s = GetTable(Isa::kScalar);
  for (KvType kt : kTypes) {
    for (const Case& c : Cases()) {
      SCOPED_TRACE(std::string(KvTypeName(kt)) + " " + c.name);
      const Data d = MakeData(c, kt, 23);
      std::vector<float> got(c.n_q * c.n_heads * c.head_dim, -9.0f), want = got;
      t.attention(Args(c, d, kt, false, got.data()));
      s.attention(Args(c, d, kt, false, want.data()));
      EXPECT_LE(MaxAbsDiff(got, want), 3e-6);
    }
  }
}

TEST_P(KvIsa, F32TypeIsTheOriginalKernel) {
  // kv_type f32 through k_codes-less args (old callers) == explicit kF32.
  const KernelTable& t = GetTable(GetParam());
  const Case c = Cases()[3];
  const Data d = MakeData(c, KvType::kF32, 29);
  std::vector<float> a(c.n_q * c.n_heads * c.head_dim), b(a.size());
  t.attention(Args(c, d, KvType::kF32, /*decoded=*/true, a.data()));
  t.attention(Args(c, d, KvType::kF32, /*decoded=*/false, b.data()));
  EXPECT_EQ(a, b);
}

std::vector<Isa> CompiledIsas() {
  std::vector<Isa> isas;
  for (int i = 0; i < kNumIsas; ++i) {
    if (IsaCompiledIn(static_cast<Isa>(i))) isas.push_back(static_cast<Isa>(i));
  }
  return isas;
}

INSTANTIATE_TEST_SUITE_P(Tables, KvIsa, ::testing::ValuesIn(CompiledIsas()),
                         [](const ::testing::TestParamInfo<Isa>& info) {
                           return std::string(IsaName(info.param));
                         });

}  // namespace
}  // namespace qlm::kernels
