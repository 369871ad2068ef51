#include "core/kv_cache.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <vector>

namespace qlm {
namespace {

ModelConfig TwoLayerConfig() {
  ModelConfig c;
  c.arch = Arch::kGemma2;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 4;
  c.hidden_size = 16;
  c.sliding_window = 4;
  c.layer_is_sliding = {true, false};
  return c;
}

// K row value for position p, head h, dim j: unique and easy to check.
float KVal(int32_t p, size_t h, size_t j) { return static_cast<float>(p * 100 + h * 10 + j); }

void WritePositions(KvCache& kv, size_t layer, int32_t pos0, size_t n) {
  const size_t kv_dim = kv.kv_heads() * kv.head_dim();
  std::vector<float> k(n * kv_dim), v(n * kv_dim);
  for (size_t i = 0; i < n; ++i) {
    for (size_t h = 0; h < kv.kv_heads(); ++h) {
      for (size_t j = 0; j < kv.head_dim(); ++j) {
        k[i * kv_dim + h * kv.head_dim() + j] = KVal(pos0 + static_cast<int32_t>(i), h, j);
        v[i * kv_dim + h * kv.head_dim() + j] = -KVal(pos0 + static_cast<int32_t>(i), h, j);
      }
    }
  }
  kv.Write(layer, pos0, n, k.data(), v.data());
}

// Slot positions are valid in [0, used): pages past it are not touched.
std::set<int32_t> Positions(const LayerKv& L) {
  std::set<int32_t> s;
  for (size_t i = 0; i < L.used; ++i) {
    if (L.slot_pos[i] >= 0) s.insert(L.slot_pos[i]);
  }
  return s;
}

void ExpectSlotHolds(const KvCache& kv, const LayerKv& L, int32_t pos) {
  const size_t slot = L.SlotOf(pos);
  ASSERT_EQ(L.slot_pos[slot], pos);
  for (size_t h = 0; h < kv.kv_heads(); ++h) {
    for (size_t j = 0; j < kv.head_dim(); ++j) {
      EXPECT_EQ(L.k[(h * L.capacity + slot) * kv.head_dim() + j], KVal(pos, h, j));
      EXPECT_EQ(L.v[(h * L.capacity + slot) * kv.head_dim() + j], -KVal(pos, h, j));
    }
  }
}

TEST(KvCache, SlidingLayersAreRingsOfExactlyTheWindow) {
  const ModelConfig c = TwoLayerConfig();
  KvCache small(c, 16), large(c, 4096);
  EXPECT_EQ(small.layer(0).capacity, 4u);
  EXPECT_EQ(large.layer(0).capacity, 4u);
  EXPECT_TRUE(large.layer(0).ring);
  EXPECT_EQ(small.layer(1).capacity, 16u);
  EXPECT_EQ(large.layer(1).capacity, 4096u);
  EXPECT_FALSE(large.layer(1).ring);
  EXPECT_EQ(large.layer(0).window, 4);
  EXPECT_EQ(large.layer(1).window, 0);
  // Growing the context grows only the global layer: 2 heads · 4 dims · 2 (K, V).
  const size_t per_position = 2 * 4 * 2 * sizeof(float) + sizeof(int32_t);
  EXPECT_GE(large.bytes() - small.bytes(), (4096 - 16) * per_position);
  EXPECT_LE(large.bytes() - small.bytes(), (4096 - 16) * per_position + 1024);
}

TEST(KvCache, EmptyUntilWritten) {
  KvCache kv(TwoLayerConfig(), 16);
  EXPECT_TRUE(Positions(kv.layer(0)).empty());
  EXPECT_TRUE(Positions(kv.layer(1)).empty());
}

TEST(KvCache, RingKeepsTheLastWindowPositions) {
  KvCache kv(TwoLayerConfig(), 64);
  for (int32_t p = 0; p < 10; ++p) {
    WritePositions(kv, 0, p, 1);
    std::set<int32_t> expected;
    for (int32_t q = std::max(0, p - 3); q <= p; ++q) expected.insert(q);
    EXPECT_EQ(Positions(kv.layer(0)), expected) << "after position " << p;
  }
  for (int32_t p = 6; p < 10; ++p) ExpectSlotHolds(kv, kv.layer(0), p);
  // A batch longer than the ring keeps its last `window` positions.
  WritePositions(kv, 0, 10, 7);
  EXPECT_EQ(Positions(kv.layer(0)), (std::set<int32_t>{13, 14, 15, 16}));
  for (int32_t p = 13; p < 17; ++p) ExpectSlotHolds(kv, kv.layer(0), p);
}

TEST(KvCache, GlobalLayerSlotIsPosition) {
  KvCache kv(TwoLayerConfig(), 32);
  WritePositions(kv, 1, 0, 5);
  WritePositions(kv, 1, 5, 1);
  EXPECT_EQ(Positions(kv.layer(1)).size(), 6u);
  for (int32_t p = 0; p < 6; ++p) {
    EXPECT_EQ(kv.layer(1).SlotOf(p), static_cast<size_t>(p));
    ExpectSlotHolds(kv, kv.layer(1), p);
  }
  kv.Clear();
  EXPECT_TRUE(Positions(kv.layer(1)).empty());
}

TEST(KvCache, ClearKeepsNoTraceOfTheOldSequence) {
  // Clear keeps the pages (and their old rows), so what a new sequence sees
  // must come from slot bookkeeping alone: a full layer exposes only the
  // slots written since, a ring marks every slot empty, and skipping
  // positions leaves the skipped slots empty, not holding old rows.
  KvCache kv(TwoLayerConfig(), 32);
  WritePositions(kv, 0, 0, 7);   // ring (window 4): slots hold 3..6
  WritePositions(kv, 1, 0, 12);  // full layer: slots 0..11
  kv.Clear();
  EXPECT_EQ(kv.layer(0).used, 0u);
  EXPECT_EQ(kv.layer(1).used, 0u);
  for (size_t s = 0; s < kv.layer(0).capacity; ++s) EXPECT_EQ(kv.layer(0).slot_pos[s], -1);
  WritePositions(kv, 0, 20, 1);  // ring slot 0
  EXPECT_EQ(Positions(kv.layer(0)), (std::set<int32_t>{20}));
  ExpectSlotHolds(kv, kv.layer(0), 20);
  WritePositions(kv, 1, 0, 2);
  WritePositions(kv, 1, 5, 1);  // slots 2..4 skipped: empty, not the old 2..4
  EXPECT_EQ(kv.layer(1).used, 6u);
  EXPECT_EQ(Positions(kv.layer(1)), (std::set<int32_t>{0, 1, 5}));
  for (int32_t p : {0, 1, 5}) ExpectSlotHolds(kv, kv.layer(1), p);
}

TEST(KvCache, WindowLargerThanContextIsNotARing) {
  ModelConfig c = TwoLayerConfig();
  c.sliding_window = 100;
  KvCache kv(c, 10);
  EXPECT_FALSE(kv.layer(0).ring);
  EXPECT_EQ(kv.layer(0).capacity, 10u);
  EXPECT_EQ(kv.layer(0).window, 100);
}

}  // namespace
}  // namespace qlm
