// Context shifting (core/context_shift.h): shifted keys equal keys rotated
// fresh at their new positions, for full and ring layers with different RoPE
// bases and every KV type; and generation with --context-shift runs far past
// the context with finite logits.
#include "core/context_shift.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "base/error.h"
#include "core/qlm.h"
#include "golden_util.h"
#include "shared_model.h"

namespace qlm {
namespace {

constexpr size_t kHeads = 2, kHd = 16, kCtx = 32, kWindow = 8;

ModelConfig Config() {
  ModelConfig c;
  c.arch = Arch::kGemma3;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = static_cast<int>(kHeads);
  c.head_dim = static_cast<int>(kHd);
  c.hidden_size = 16;
  c.sliding_window = static_cast<int>(kWindow);
  c.layer_is_sliding = {true, false};  // layer 0: ring, local base; layer 1: global
  return c;
}

// Keys before RoPE, one row per (position, head): deterministic.
std::vector<float> PreRope(size_t n) {
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> x(n * kHeads * kHd);
  for (float& v : x) v = dist(rng);
  return x;
}

// Rotates one head row to position `pos` (double precision, rotate-half).
void RotateTo(const RopeFreqs& f, int32_t pos, float* x) {
  const size_t half = kHd / 2;
  for (size_t i = 0; i < half; ++i) {
    const double a = x[i], b = x[i + half];
    const double ang = static_cast<double>(f.inv_freq[i]) * pos;
    x[i] = static_cast<float>(a * std::cos(ang) - b * std::sin(ang));
    x[i + half] = static_cast<float>(b * std::cos(ang) + a * std::sin(ang));
  }
}

double Tolerance(KvType t) {
  switch (t) {
    case KvType::kF32:
      return 2e-6;
    case KvType::kBF16:
      return 2e-2;
    case KvType::kInt8:
      return 3e-2;
    case KvType::kSFP8:
      return 0.2;
  }
  return 0;
}

TEST(ContextShift, ShiftedKeysEqualKeysRotatedAtTheNewPositions) {
  const RopeFreqs local = MakeRopeFreqs(10000.0f, kHd, RopeScaling{});
  const RopeFreqs global = MakeRopeFreqs(1000000.0f, kHd, RopeScaling{});
  const std::vector<const RopeFreqs*> rope = {&local, &global};
  const std::vector<float> pre = PreRope(kCtx);
  const size_t keep = 3, discard = 10;
  for (KvType t : {KvType::kF32, KvType::kBF16, KvType::kInt8, KvType::kSFP8}) {
    SCOPED_TRACE(kernels::KvTypeName(t));
    KvCache kv(Config(), kCtx, t);
    for (size_t l = 0; l < 2; ++l) {
      for (int32_t p = 0; p < static_cast<int32_t>(kCtx); ++p) {
        std::vector<float> k(pre.begin() + p * kHeads * kHd, pre.begin() + (p + 1) * kHeads * kHd);
        std::vector<float> v = k;
        for (float& x : v) x = -x;  // values: position-independent
        for (size_t h = 0; h < kHeads; ++h) RotateTo(*rope[l], p, k.data() + h * kHd);
        kv.Write(l, p, 1, k.data(), v.data());
      }
    }
    ShiftKvCache(kv, rope, keep, discard);
    for (size_t l = 0; l < 2; ++l) {
      SCOPED_TRACE("layer " + std::to_string(l));
      const LayerKv& L = kv.layer(l);
      // Full layer: positions 0..21 remain; ring: the last 8 (24..31 → 14..21).
      const int32_t first = l == 0 ? static_cast<int32_t>(kCtx - kWindow - discard) : 0;
      const int32_t last = static_cast<int32_t>(kCtx - discard) - 1;
      EXPECT_EQ(L.used, l == 0 ? kWindow : kCtx - discard);
      size_t seen = 0;
      for (size_t s = 0; s < L.used; ++s) seen += L.slot_pos[s] >= 0;
      EXPECT_EQ(seen, static_cast<size_t>(last - first + 1));
      const size_t row_bytes = kHd * kernels::KvElemBytes(t);
      for (int32_t q = first; q <= last; ++q) {
        const size_t s = L.SlotOf(q);
        ASSERT_EQ(L.slot_pos[s], q);
        const int32_t old = q < static_cast<int32_t>(keep) ? q : q + static_cast<int32_t>(discard);
        for (size_t h = 0; h < kHeads; ++h) {
          std::vector<float> want(pre.begin() + (old * kHeads + h) * kHd,
                                  pre.begin() + (old * kHeads + h + 1) * kHd);
          RotateTo(*rope[l], q, want.data());  // fresh at the new position
          std::vector<float> got(kHd), val(kHd);
          const size_t r = h * L.capacity + s;
          kv.DecodeRow(L.k_codes + r * row_bytes, L.k_scale ? L.k_scale[r] : 0.0f, got.data());
          kv.DecodeRow(L.v_codes + r * row_bytes, L.v_scale ? L.v_scale[r] : 0.0f, val.data());
          for (size_t d = 0; d < kHd; ++d) {
            ASSERT_NEAR(got[d], want[d], Tolerance(t)) << "position " << q << " head " << h;
            ASSERT_NEAR(val[d], -pre[(old * kHeads + h) * kHd + d], Tolerance(t) / 2);
          }
        }
      }
    }
  }
}

TEST(ContextShift, RejectsMismatchedRopeTables) {
  KvCache kv(Config(), kCtx);
  const RopeFreqs f = MakeRopeFreqs(10000.0f, kHd, RopeScaling{});
  EXPECT_THROW(ShiftKvCache(kv, {&f}, 1, 2), Error);
}

const Model& Austen() { return testing::AustenModel(); }

TEST(ContextShift, GenerationRunsPastTheContextWithFiniteLogits) {
  for (KvType t : {KvType::kF32, KvType::kInt8}) {
    SCOPED_TRACE(kernels::KvTypeName(t));
    SessionOptions so;
    so.context = 160;  // past the sliding window (128): rings wrap, then shift
    so.batch = 16;
    so.kv_type = t;
    so.context_shift = true;
    so.keep = 4;
    Session s(Austen(), so);
    GenerateParams gp;
    gp.sampling.temperature = 0.0f;
    gp.max_tokens = 500;
    gp.stop_at_eos = false;
    size_t non_finite = 0;
    gp.logit_filter = [&](std::span<float> logits) {
      for (float x : logits) non_finite += !std::isfinite(x);
    };
    const GenerateStats st = s.Generate("It is a truth universally acknowledged", gp, nullptr);
    EXPECT_EQ(st.generated, 500u);
    EXPECT_EQ(st.stop, StopReason::kMaxTokens);
    EXPECT_GE(st.context_shifts, 5u);
    EXPECT_EQ(non_finite, 0u);
    EXPECT_LE(s.position(), so.context);
    EXPECT_EQ(s.tokens().size(), s.position() + 1);  // the last sampled token is pending
  }
}

TEST(ContextShift, WithoutShiftGenerationStopsAtTheContext) {
  SessionOptions so;
  so.context = 40;
  Session s(Austen(), so);
  GenerateParams gp;
  gp.sampling.temperature = 0.0f;
  gp.max_tokens = 100;
  gp.stop_at_eos = false;
  const GenerateStats st = s.Generate("It is a truth", gp, nullptr);
  EXPECT_EQ(st.stop, StopReason::kContextFull);
  EXPECT_EQ(st.context_shifts, 0u);
}

TEST(ContextShift, SessionShiftValidatesItsRange) {
  Session s(Austen(), SessionOptions{.context = 64});
  const std::vector<int32_t> ids = {2, 100, 200, 300, 400, 500};
  s.Forward(ids);
  EXPECT_THROW(s.ShiftContext(4, 3), UsageError);
  EXPECT_THROW(s.ShiftContext(1, 0), UsageError);
  s.ShiftContext(1, 2);
  EXPECT_EQ(s.position(), 4u);
  EXPECT_EQ(std::vector<int32_t>(s.tokens().begin(), s.tokens().end()),
            (std::vector<int32_t>{2, 300, 400, 500}));
  // The shifted session still evaluates: finite logits at the next position.
  const int32_t next = 42;
  for (float x : s.Forward(std::span<const int32_t>(&next, 1))) ASSERT_TRUE(std::isfinite(x));
}

}  // namespace
}  // namespace qlm
