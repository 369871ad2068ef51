// Prompt cache files (core/prompt_cache.h through Session): a restored
// session continues exactly like the one that saved it, and every kind of
// mismatching or damaged file is rejected cleanly (0 tokens, a reason, an
// empty session that still works).
#include "core/prompt_cache.h"

#include <gtest/gtest.h>

#include <unistd.h>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "base/error.h"
#include "core/qlm.h"
#include "golden_util.h"
#include "shared_model.h"

namespace qlm {
namespace {

namespace fs = std::filesystem;

const Model& Austen() { return testing::AustenModel(); }
const Model& TinyGemma2() {
  static const Model* m = testing::LoadSharedModel("fixtures/tiny-gemma2");
  return *m;
}

std::string TempPath(const std::string& name) {
  return (fs::temp_directory_path() / ("qlm_prompt_cache_" + std::to_string(getpid()) + name))
      .string();
}

std::vector<int32_t> PromptIds() {
  // Longer than the sliding window (128) so ring layers have wrapped.
  std::string text;
  for (int i = 0; i < 12; ++i)
    text += "It is a truth universally acknowledged, that a single man. ";
  const std::vector<int> ids = Austen().tokenizer().Encode(text, true);
  return {ids.begin(), ids.end()};
}

SessionOptions Options(KvType t = KvType::kF32, size_t ctx = 256) {
  SessionOptions so;
  so.context = ctx;
  so.batch = 32;
  so.kv_type = t;
  return so;
}

TEST(PromptCache, RestoredSessionContinuesIdentically) {
  const std::vector<int32_t> ids = PromptIds();
  ASSERT_GT(ids.size(), 140u);
  const std::span<const int32_t> prefix(ids.data(), ids.size() - 1);
  const int32_t last = ids.back();
  for (KvType t : {KvType::kF32, KvType::kInt8}) {
    SCOPED_TRACE(kernels::KvTypeName(t));
    const std::string path = TempPath("same");
    Session a(Austen(), Options(t));
    a.Forward(prefix);
    a.SavePromptCache(path);
    const std::span<const float> la = a.Forward(std::span<const int32_t>(&last, 1));
    const std::vector<float> want(la.begin(), la.end());

    Session b(Austen(), Options(t));
    std::string why;
    ASSERT_EQ(b.LoadPromptCache(path, prefix, &why), prefix.size()) << why;
    EXPECT_EQ(b.position(), prefix.size());
    const std::span<const float> lb = b.Forward(std::span<const int32_t>(&last, 1));
    EXPECT_EQ(std::vector<float>(lb.begin(), lb.end()), want);

    // A longer prompt with the same prefix also uses it.
    std::vector<int32_t> longer = ids;
    longer.push_back(17);
    Session c(Austen(), Options(t));
    EXPECT_EQ(c.LoadPromptCache(path, longer, &why), prefix.size()) << why;

    // Greedy generation: same text with and without the cache.
    GenerateParams gp;
    gp.sampling.temperature = 0.0f;
    gp.max_tokens = 20;
    std::string with, without;
    Session d(Austen(), Options(t));
    d.Generate(ids, gp, [&](int32_t, std::string_view s) {
      without += s;
      return true;
    });
    Session e(Austen(), Options(t));
    ASSERT_EQ(e.LoadPromptCache(path, prefix, &why), prefix.size());
    e.Generate(std::span<const int32_t>(&last, 1), gp, [&](int32_t, std::string_view s) {
      with += s;
      return true;
    });
    EXPECT_EQ(with, without);
    fs::remove(path);
  }
}

TEST(PromptCache, MismatchesAreRejectedCleanly) {
  const std::vector<int32_t> ids = PromptIds();
  const std::span<const int32_t> prefix(ids.data(), ids.size() - 1);
  const std::string path = TempPath("mismatch");
  {
    Session a(Austen(), Options());
    a.Forward(prefix);
    a.SavePromptCache(path);
  }
  auto expect_rejected = [&](Session& s, std::span<const int32_t> prompt, const std::string& what) {
    SCOPED_TRACE(what);
    std::string why;
    EXPECT_EQ(s.LoadPromptCache(path, prompt, &why), 0u);
    EXPECT_NE(why.find(what), std::string::npos) << why;
    EXPECT_EQ(s.position(), 0u);
    // The session is still usable from scratch.
    const std::span<const float> l = s.Forward(prompt.first(5));
    EXPECT_EQ(l.size(), static_cast<size_t>(Austen().config().vocab_size));
  };
  {
    Session s(Austen(), Options(KvType::kInt8));
    expect_rejected(s, prefix, "int8");
  }
  {
    Session s(Austen(), Options(KvType::kF32, 512));
    expect_rejected(s, prefix, "context");
  }
  {
    std::vector<int32_t> other(prefix.begin(), prefix.end());
    other[10] = other[10] == 100 ? 101 : 100;
    Session s(Austen(), Options());
    expect_rejected(s, other, "not a prefix");
  }
  {
    Session s(Austen(), Options());
    expect_rejected(s, prefix.first(20), "more than the prompt");
  }
  {
    // Another model (same tokenizer, other weights and shape).
    const Model& tiny = TinyGemma2();
    SessionOptions so = Options();
    Session s(tiny, so);
    std::string why;
    EXPECT_EQ(s.LoadPromptCache(path, prefix, &why), 0u);
    EXPECT_NE(why.find("different model"), std::string::npos) << why;
  }
  {
    // Truncated file.
    const auto size = fs::file_size(path);
    fs::resize_file(path, size - 100);
    Session s(Austen(), Options());
    expect_rejected(s, prefix, "truncated");
    // Not a cache at all.
    std::ofstream(path, std::ios::binary | std::ios::trunc) << "hello, world";
    Session s2(Austen(), Options());
    expect_rejected(s2, prefix, "bad magic");
    fs::remove(path);
    Session s3(Austen(), Options());
    expect_rejected(s3, prefix, "no file");
  }
  {
    Session s(Austen(), Options());
    s.Forward(prefix.first(3));
    std::string why;
    EXPECT_THROW(s.LoadPromptCache(path, prefix, &why), UsageError);
  }
}

}  // namespace
}  // namespace qlm
