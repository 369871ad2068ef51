// KV cache storage types (f32, bf16, int8, sfp8) and lazily committed KV
// memory: the row codecs, the cache's byte accounting, resident memory, and
// the Austen model run end to end with each type.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "base/error.h"
#include "core/kv_cache.h"
#include "core/qlm.h"
#include "golden_util.h"
#include "shared_model.h"

namespace qlm {
namespace {

const Model& Austen() { return testing::AustenModel(); }

ModelConfig SmallConfig(int head_dim) {
  ModelConfig c;
  c.arch = Arch::kGemma2;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = head_dim;
  c.hidden_size = 16;
  c.sliding_window = 8;
  c.layer_is_sliding = {true, false};
  return c;
}

constexpr KvType kTypes[] = {KvType::kF32, KvType::kBF16, KvType::kInt8, KvType::kSFP8};

TEST(KvTypes, ParseNames) {
  for (KvType t : kTypes) EXPECT_EQ(ParseKvType(kernels::KvTypeName(t)), t);
  EXPECT_THROW(ParseKvType("q4"), UsageError);
  EXPECT_THROW(ParseKvType(""), UsageError);
}

TEST(KvTypes, RowRoundTripErrorIsBoundedPerType) {
  for (int hd : {5, 64, 33}) {
    for (KvType t : kTypes) {
      SCOPED_TRACE(std::string(kernels::KvTypeName(t)) + " hd " + std::to_string(hd));
      KvCache kv(SmallConfig(hd), 16, t);
      std::mt19937 rng(static_cast<uint32_t>(hd));
      std::uniform_real_distribution<float> dist(-3.0f, 3.0f);
      std::vector<float> x(static_cast<size_t>(hd)), y(x.size());
      for (float& v : x) v = dist(rng);
      float amax = 0.0f;
      for (float v : x) amax = std::max(amax, std::fabs(v));
      std::vector<uint8_t> codes(x.size() * 4);
      float scale = -1.0f;
      kv.EncodeRow(x.data(), codes.data(), &scale);
      kv.DecodeRow(codes.data(), scale, y.data());
      for (size_t d = 0; d < x.size(); ++d) {
        const float err = std::fabs(y[d] - x[d]);
        switch (t) {
          case KvType::kF32:
            ASSERT_EQ(y[d], x[d]);
            break;
          case KvType::kBF16:
            ASSERT_LE(err, std::fabs(x[d]) / 256.0f);
            break;
          case KvType::kInt8:
            ASSERT_LE(err, 0.5001f * amax / 127.0f);
            break;
          case KvType::kSFP8:  // 3 mantissa bits near the top, 2 lower down
            ASSERT_LE(err, std::max(std::fabs(x[d]) / 8.0f, amax / 1.875f * 0.008f));
            break;
        }
      }
    }
  }
  // An all-zero row (int8/sfp8 scale 0) decodes to zeros, not NaN.
  KvCache kv(SmallConfig(7), 4, KvType::kInt8);
  const std::vector<float> zero(7, 0.0f);
  std::vector<uint8_t> codes(7);
  std::vector<float> y(7, 1.0f);
  float scale = 1.0f;
  kv.EncodeRow(zero.data(), codes.data(), &scale);
  kv.DecodeRow(codes.data(), scale, y.data());
  for (float v : y) EXPECT_EQ(v, 0.0f);
}

TEST(KvTypes, BytesPerTypeAndLayerKind) {
  const ModelConfig c = SmallConfig(64);
  for (KvType t : kTypes) {
    KvCache kv(c, 1000, t);
    const size_t scale = kernels::KvHasScale(t) ? 4 : 0;
    EXPECT_EQ(kv.slot_bytes(), 2 * 2 * (64 * kernels::KvElemBytes(t) + scale) + 4);
    // Reserved: the global layer's 1000 slots plus the ring's 8 (64-byte alignment).
    EXPECT_GE(kv.bytes(), (1000 + 8) * kv.slot_bytes());
    EXPECT_LE(kv.bytes(), (1000 + 8) * kv.slot_bytes() + 10 * 64);
    EXPECT_EQ(kv.bytes(), KvCache::BytesAt(c, 1000, t));
    EXPECT_EQ(kv.used_bytes(), 0u);
    std::vector<float> k(20 * 128, 0.5f), v(20 * 128, -0.25f);
    kv.Write(0, 0, 20, k.data(), v.data());
    kv.Write(1, 0, 20, k.data(), v.data());
    // Ring: 8 slots used, global layer: 20.
    EXPECT_EQ(kv.used_bytes(), (20 + 8) * kv.slot_bytes());
    kv.Clear();
    EXPECT_EQ(kv.used_bytes(), 0u);
  }
}

size_t ResidentBytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  unsigned long long size = 0, resident = 0;
  const int got = std::fscanf(f, "%llu %llu", &size, &resident);
  std::fclose(f);
  return got == 2 ? static_cast<size_t>(resident) * static_cast<size_t>(sysconf(_SC_PAGESIZE)) : 0;
}

TEST(KvTypes, MemoryIsCommittedAsPositionsAreWritten) {
  // A 1M-position context reserves ~1 GiB but must cost almost nothing until
  // written, grow with the positions written (committed at most a chunk
  // ahead), keep its pages over Clear (a reset session reuses them) and give
  // them back when destroyed.
  const ModelConfig c = SmallConfig(64);
  const size_t rss0 = ResidentBytes();
  if (rss0 == 0) GTEST_SKIP() << "no /proc/self/statm";
  auto kv = std::make_unique<KvCache>(c, size_t{1} << 20, KvType::kF32);
  EXPECT_GT(kv->bytes(), size_t{1} << 30);
  const size_t rss_created = ResidentBytes();
  EXPECT_LT(rss_created, rss0 + (size_t{8} << 20)) << "creating the cache committed memory";
  const size_t n = 16384, kv_dim = 2 * 64;
  std::vector<float> k(256 * kv_dim, 1.0f), v(256 * kv_dim, 2.0f);
  auto write_all = [&] {
    for (size_t p = 0; p < n; p += 256) {
      kv->Write(1, static_cast<int32_t>(p), 256, k.data(), v.data());
    }
  };
  write_all();
  const size_t rss_written = ResidentBytes();
  const size_t used = kv->used_bytes();
  EXPECT_EQ(used, n * kv->slot_bytes());
  // Resident growth ≈ the rows written (16 MiB), far below the reservation.
  EXPECT_GT(rss_written, rss_created + used / 2);
  EXPECT_LT(rss_written, rss_created + 2 * used + (size_t{8} << 20));
  kv->Clear();
  EXPECT_EQ(kv->used_bytes(), 0u);
  EXPECT_GT(ResidentBytes(), rss_written - used / 4) << "Clear gave the pages back";
  write_all();  // the same positions again: no new memory
  EXPECT_LT(ResidentBytes(), rss_written + (size_t{4} << 20));
  kv.reset();
  EXPECT_LT(ResidentBytes(), rss_written - used / 2) << "destroying the cache kept its pages";
}

// Logits of the Austen model over a prompt longer than the sliding window
// (128), evaluated in batches of 64 (the ring-staging path) then one decode
// step, with the given KV type.
std::vector<float> AustenLogits(KvType t, size_t* n_tokens) {
  const Model& m = Austen();
  SessionOptions so;
  so.context = 512;
  so.batch = 64;
  so.kv_type = t;
  Session s(m, so);
  std::vector<int> ids = m.tokenizer().Encode(
      "It is a truth universally acknowledged, that a single man in possession of a good "
      "fortune, must be in want of a wife. However little known the feelings or views of such "
      "a man may be on his first entering a neighbourhood, this truth is so well fixed in the "
      "minds of the surrounding families, that he is considered as the rightful property of "
      "some one or other of their daughters. My dear Mr. Bennet, said his lady to him one day, "
      "have you heard that Netherfield Park is let at last? Mr. Bennet replied that he had not. "
      "But it is, returned she; for Mrs. Long has just been here, and she told me all about it.",
      true);
  std::vector<int32_t> ids32(ids.begin(), ids.end());
  EXPECT_GT(ids32.size(), 130u);  // past the window of 128
  const std::span<const float> all = s.Forward(ids32, /*all_logits=*/true);
  std::vector<float> out(all.begin(), all.end());
  const int32_t next = 17;
  const std::span<const float> last = s.Forward(std::span<const int32_t>(&next, 1));
  out.insert(out.end(), last.begin(), last.end());
  *n_tokens = ids32.size() + 1;
  return out;
}

TEST(KvTypes, AustenModelWithEveryKvType) {
  size_t n = 0;
  const std::vector<float> ref = AustenLogits(KvType::kF32, &n);
  const size_t vocab = static_cast<size_t>(Austen().config().vocab_size);
  ASSERT_EQ(ref.size(), n * vocab);
  for (KvType t : {KvType::kBF16, KvType::kInt8, KvType::kSFP8}) {
    SCOPED_TRACE(kernels::KvTypeName(t));
    const std::vector<float> got = AustenLogits(t, &n);
    ASSERT_EQ(got.size(), ref.size());
    size_t agree = 0;
    double max_diff = 0.0;
    for (size_t i = 0; i < n; ++i) {
      const float* a = ref.data() + i * vocab;
      const float* b = got.data() + i * vocab;
      agree += std::max_element(a, a + vocab) - a == std::max_element(b, b + vocab) - b;
      for (size_t j = 0; j < vocab; ++j) {
        ASSERT_TRUE(std::isfinite(b[j]));
        max_diff = std::max(max_diff, static_cast<double>(std::fabs(a[j] - b[j])));
      }
    }
    // Quantized keys/values perturb the logits a little, never wholesale.
    EXPECT_GE(static_cast<double>(agree), 0.9 * static_cast<double>(n));
    EXPECT_LT(max_diff, t == KvType::kBF16 ? 0.5 : 2.0);
    EXPECT_GT(max_diff, 0.0) << "quantized KV gave bit-identical logits: not in use?";
  }
}

TEST(KvTypes, F32IsTheDefaultAndBitIdentical) {
  size_t n = 0;
  const Model& m = Austen();
  Session def(m, SessionOptions{.context = 512, .batch = 64, .threads = 1});
  EXPECT_EQ(def.kv_type(), KvType::kF32);
  const std::vector<float> explicit_f32 = AustenLogits(KvType::kF32, &n);
  const std::vector<float> again = AustenLogits(KvType::kF32, &n);
  EXPECT_EQ(explicit_f32, again);
}

}  // namespace
}  // namespace qlm
