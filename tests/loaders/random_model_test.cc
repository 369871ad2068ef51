#include "loaders/random_model.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "base/error.h"
#include "loaders/model_config.h"
#include "loaders/weight_store.h"
#include "quant/half.h"

namespace qlm {
namespace {

namespace fs = std::filesystem;

std::string TokenizerPath() {
  const std::string p = std::string(QLM_SHARED_DIR) + "/models/austen-gemma3/tokenizer.model";
  if (!fs::exists(p)) ADD_FAILURE() << "test data missing: " << p;
  return p;
}

std::string ReadAll(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

class RandomModelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("qlm_random_model_" + std::to_string(::getpid()) + "_" + info->name());
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  RandomModelOptions Options(const std::string& shape, const std::string& sub = "m") {
    RandomModelOptions o;
    o.shape = shape;
    o.out_dir = (dir_ / sub).string();
    o.tokenizer_path = TokenizerPath();
    return o;
  }

  fs::path dir_;
};

// Published parameter counts pin down every tensor shape of the real models.
TEST(RandomModelShapes, ListsTheRealShapesWithTheirPublishedSizes) {
  std::map<std::string, RandomModelShapeInfo> by_name;
  for (const auto& s : RandomModelShapes(false)) {
    EXPECT_FALSE(s.test_only) << s.name;
    by_name[s.name] = s;
  }
  ASSERT_EQ(by_name.size(), 4u);
  EXPECT_EQ(by_name.at("gemma-2-2b").params, 2614341888u);
  EXPECT_EQ(by_name.at("gemma-3-1b").params, 999885952u);
  EXPECT_EQ(by_name.at("gemma-3-270m").params, 268098176u);
  EXPECT_EQ(by_name.at("llama-2-7b").params, 6738415616u);
  for (const auto& [name, s] : by_name) EXPECT_EQ(s.bytes, 2 * s.params) << name;
  EXPECT_EQ(by_name.at("gemma-2-2b").model_type, "gemma2");
  EXPECT_EQ(by_name.at("gemma-3-1b").model_type, "gemma3_text");
  EXPECT_EQ(by_name.at("llama-2-7b").model_type, "llama");

  size_t test_shapes = 0;
  for (const auto& s : RandomModelShapes(true)) test_shapes += s.test_only;
  EXPECT_EQ(test_shapes, 4u);  // tiny-test, -gemma2, -llama, -padded
}

TEST(RandomModelShapes, UnknownShapeIsAUsageErrorListingTheKnownOnes) {
  try {
    RandomModelConfigJson("gemma-7b");
    FAIL() << "no error";
  } catch (const UsageError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("gemma-7b"), std::string::npos) << msg;
    EXPECT_NE(msg.find("gemma-2-2b"), std::string::npos) << msg;
    EXPECT_NE(msg.find("llama-2-7b"), std::string::npos) << msg;
  }
  EXPECT_THROW(RandomModelTensors("nope"), UsageError);
}

TEST(RandomModelShapes, Gemma2_2bConfigHasTheRealValues) {
  const ModelConfig c = ParseHfConfig(RandomModelConfigJson("gemma-2-2b"));
  EXPECT_EQ(c.arch, Arch::kGemma2);
  EXPECT_EQ(c.vocab_size, 256000);
  EXPECT_EQ(c.hidden_size, 2304);
  EXPECT_EQ(c.intermediate_size, 9216);
  EXPECT_EQ(c.num_layers, 26);
  EXPECT_EQ(c.num_heads, 8);
  EXPECT_EQ(c.num_kv_heads, 4);
  EXPECT_EQ(c.head_dim, 256);
  EXPECT_EQ(c.max_position_embeddings, 8192);
  EXPECT_FLOAT_EQ(c.rms_norm_eps, 1e-6f);
  EXPECT_FLOAT_EQ(c.rope_theta, 10000.0f);
  EXPECT_FLOAT_EQ(c.attn_scale, 1.0f / 16.0f);  // query_pre_attn_scalar 256
  EXPECT_FLOAT_EQ(c.attn_logit_softcap, 50.0f);
  EXPECT_FLOAT_EQ(c.final_logit_softcap, 30.0f);
  EXPECT_EQ(c.sliding_window, 4096);
  ASSERT_EQ(c.layer_is_sliding.size(), 26u);
  for (int i = 0; i < 26; ++i) EXPECT_EQ(c.layer_is_sliding[i], i % 2 == 0) << i;
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.activation, Activation::kGeluTanh);
  EXPECT_EQ(c.bos_token_id, 2);
}

TEST(RandomModelShapes, Gemma3ConfigsHaveTheRealValues) {
  for (const std::string shape : {"gemma-3-1b", "gemma-3-270m"}) {
    SCOPED_TRACE(shape);
    const bool big = shape == "gemma-3-1b";
    const ModelConfig c = ParseHfConfig(RandomModelConfigJson(shape));
    EXPECT_EQ(c.arch, Arch::kGemma3);
    EXPECT_EQ(c.vocab_size, 262144);
    EXPECT_EQ(c.hidden_size, big ? 1152 : 640);
    EXPECT_EQ(c.intermediate_size, big ? 6912 : 2048);
    EXPECT_EQ(c.num_layers, big ? 26 : 18);
    EXPECT_EQ(c.num_heads, 4);
    EXPECT_EQ(c.num_kv_heads, 1);
    EXPECT_EQ(c.head_dim, 256);
    EXPECT_EQ(c.max_position_embeddings, 32768);
    EXPECT_FLOAT_EQ(c.rope_theta, 1e6f);
    EXPECT_FLOAT_EQ(c.rope_local_base_freq, 1e4f);
    EXPECT_FLOAT_EQ(c.attn_scale, 1.0f / 16.0f);
    EXPECT_EQ(c.attn_logit_softcap, 0.0f);
    EXPECT_EQ(c.final_logit_softcap, 0.0f);
    EXPECT_EQ(c.sliding_window, 512);
    ASSERT_EQ(c.layer_is_sliding.size(), static_cast<size_t>(c.num_layers));
    for (int i = 0; i < c.num_layers; ++i) EXPECT_EQ(c.layer_is_sliding[i], (i + 1) % 6 != 0) << i;
    EXPECT_TRUE(c.tie_word_embeddings);
    EXPECT_TRUE(c.qk_norm);
  }
}

TEST(RandomModelShapes, Llama2_7bConfigHasTheRealValues) {
  const ModelConfig c = ParseHfConfig(RandomModelConfigJson("llama-2-7b"));
  EXPECT_EQ(c.arch, Arch::kLlama);
  EXPECT_EQ(c.vocab_size, 32000);
  EXPECT_EQ(c.hidden_size, 4096);
  EXPECT_EQ(c.intermediate_size, 11008);
  EXPECT_EQ(c.num_layers, 32);
  EXPECT_EQ(c.num_heads, 32);
  EXPECT_EQ(c.num_kv_heads, 32);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.max_position_embeddings, 4096);
  EXPECT_FLOAT_EQ(c.rms_norm_eps, 1e-5f);
  EXPECT_FLOAT_EQ(c.rope_theta, 10000.0f);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.activation, Activation::kSilu);
  EXPECT_EQ(c.sliding_window, 0);
  // The copied Austen tokenizer's ids, not Llama's own.
  EXPECT_EQ(c.bos_token_id, 2);
}

TEST(RandomModelShapes, TensorNamesFollowHuggingFace) {
  auto names = [](const std::string& shape) {
    std::set<std::string> out;
    for (const auto& t : RandomModelTensors(shape)) out.insert(t.name);
    return out;
  };
  const auto g2 = names("gemma-2-2b");
  EXPECT_EQ(g2.size(), 1u + 26u * 11u + 1u);
  EXPECT_TRUE(g2.count("model.embed_tokens.weight"));
  EXPECT_TRUE(g2.count("model.layers.25.post_feedforward_layernorm.weight"));
  EXPECT_TRUE(g2.count("model.layers.0.pre_feedforward_layernorm.weight"));
  EXPECT_FALSE(g2.count("model.layers.0.self_attn.q_norm.weight"));
  EXPECT_FALSE(g2.count("lm_head.weight"));
  const auto g3 = names("gemma-3-1b");
  EXPECT_EQ(g3.size(), 1u + 26u * 13u + 1u);
  EXPECT_TRUE(g3.count("model.layers.3.self_attn.k_norm.weight"));
  const auto ll = names("llama-2-7b");
  EXPECT_EQ(ll.size(), 1u + 32u * 9u + 2u);
  EXPECT_TRUE(ll.count("lm_head.weight"));
  EXPECT_TRUE(ll.count("model.norm.weight"));
  EXPECT_FALSE(ll.count("model.layers.0.pre_feedforward_layernorm.weight"));
  for (const auto& t : RandomModelTensors("llama-2-7b")) {
    if (t.name == "model.layers.7.mlp.down_proj.weight") {
      EXPECT_EQ(t.shape, (std::vector<int64_t>{4096, 11008}));
    }
    if (t.name == "model.layers.7.self_attn.k_proj.weight") {
      EXPECT_EQ(t.shape, (std::vector<int64_t>{4096, 4096}));
    }
  }
}

TEST(RandomModelFill, IsIndependentOfChunkingAndWithinRange) {
  constexpr size_t kN = 10001;
  std::vector<uint16_t> whole(kN), parts(kN);
  FillRandomBF16(whole.data(), kN, 42, 0, 1.0f, 0.25f);
  FillRandomBF16(parts.data(), 4000, 42, 0, 1.0f, 0.25f);
  FillRandomBF16(parts.data() + 4000, 6, 42, 4000, 1.0f, 0.25f);
  FillRandomBF16(parts.data() + 4006, kN - 4006, 42, 4006, 1.0f, 0.25f);
  EXPECT_EQ(whole, parts);
  double sum = 0, sq = 0;
  for (uint16_t b : whole) {
    const float v = BF16ToF32(b);
    ASSERT_GE(v, 0.75f - 1e-3f);
    ASSERT_LE(v, 1.25f + 1e-3f);
    sum += v;
    sq += (v - 1.0) * (v - 1.0);
  }
  EXPECT_NEAR(sum / kN, 1.0, 0.01);
  EXPECT_NEAR(std::sqrt(sq / kN), 0.25 / std::sqrt(3.0), 0.01);
  std::vector<uint16_t> other(kN);
  FillRandomBF16(other.data(), kN, 43, 0, 1.0f, 0.25f);
  EXPECT_NE(whole, other);
  EXPECT_THROW(FillRandomBF16(other.data(), 2, 42, 3, 0.0f, 1.0f), Error);
}

// Writes every tiny test shape and reads it back as the engine would.
TEST_F(RandomModelTest, TinyShapesWriteAndLoad) {
  for (const std::string shape : {"tiny-test", "tiny-test-gemma2", "tiny-test-llama"}) {
    SCOPED_TRACE(shape);
    RandomModelOptions o = Options(shape, shape);
    uint64_t last_done = 0, last_total = 0;
    o.progress = [&](uint64_t done, uint64_t total) {
      EXPECT_GE(done, last_done);
      last_done = done;
      last_total = total;
    };
    WriteRandomModel(o);
    EXPECT_EQ(last_done, last_total);
    const fs::path dir = o.out_dir;
    EXPECT_TRUE(fs::exists(dir / "model.safetensors"));
    EXPECT_FALSE(fs::exists(dir / "model.safetensors.index.json"));
    EXPECT_EQ(ReadAll(dir / "tokenizer.model"), ReadAll(o.tokenizer_path));

    const ModelConfig c = ReadHfConfig((dir / "config.json").string());
    EXPECT_EQ(c.vocab_size, 8000);
    EXPECT_EQ(c.hidden_size, 64);

    const auto expected = RandomModelTensors(shape);
    WeightStore ws = WeightStore::OpenHfDir(dir.string());
    EXPECT_EQ(ws.tensors().size(), expected.size());
    const bool llama = c.arch == Arch::kLlama;
    for (const auto& t : expected) {
      SCOPED_TRACE(t.name);
      const StoredTensor& st = ws.Get(t.name);
      ASSERT_EQ(st.dtype, DType::kBF16);
      ASSERT_EQ(st.shape, t.shape);
      double sum = 0, sq = 0;
      const int64_t n = st.numel();
      for (int64_t i = 0; i < n; ++i) {
        uint16_t b;
        std::memcpy(&b, st.data + 2 * i, 2);
        const float v = BF16ToF32(b);
        ASSERT_TRUE(std::isfinite(v));
        sum += v;
        sq += double{v} * v;
      }
      const double mean = sum / n, std = std::sqrt(sq / n - mean * mean);
      if (t.shape.size() == 1) {  // norms: (1 + w) for gemma, w for llama
        EXPECT_NEAR(mean, llama ? 1.0 : 0.0, 0.03);
        EXPECT_LT(std, 0.05);
      } else {
        const double fan_in = (t.name.find("embed") != std::string::npos ||
                               t.name.find("lm_head") != std::string::npos)
                                  ? 64.0
                                  : static_cast<double>(t.shape[1]);
        EXPECT_NEAR(mean, 0.0, 0.02);
        EXPECT_NEAR(std, 1.0 / std::sqrt(fan_in), 0.1 / std::sqrt(fan_in));
      }
    }
    const nlohmann::json cfg = nlohmann::json::parse(ReadAll(dir / "config.json"));
    EXPECT_EQ(cfg.at("torch_dtype"), "bfloat16");
    EXPECT_NE(cfg.at("_name_or_path").get<std::string>().find("random"), std::string::npos);
  }
}

TEST_F(RandomModelTest, LargeModelsAreShardedWithAnIndex) {
  RandomModelOptions one = Options("tiny-test", "single");
  WriteRandomModel(one);
  RandomModelOptions sharded = Options("tiny-test", "sharded");
  sharded.max_shard_bytes = 100 * 1000;
  WriteRandomModel(sharded);

  const fs::path dir = sharded.out_dir;
  ASSERT_TRUE(fs::exists(dir / "model.safetensors.index.json"));
  EXPECT_FALSE(fs::exists(dir / "model.safetensors"));
  const nlohmann::json index = nlohmann::json::parse(ReadAll(dir / "model.safetensors.index.json"));
  std::set<std::string> files;
  for (const auto& [tensor, file] : index.at("weight_map").items()) files.insert(file);
  EXPECT_GE(files.size(), 3u);
  const std::string n = std::to_string(files.size());
  EXPECT_TRUE(files.count("model-00001-of-0000" + n + ".safetensors")) << *files.begin();
  uint64_t data = 0;
  for (const auto& f : files) {
    const uint64_t size = fs::file_size(dir / f);
    // The 1 MB embedding gets a shard of its own; every other shard fits.
    if (size > sharded.max_shard_bytes) {
      EXPECT_EQ(index.at("weight_map").at("model.embed_tokens.weight"), f);
    }
    data += size;
  }
  EXPECT_GT(data, index.at("metadata").at("total_size").get<uint64_t>());

  // Same seed, same bytes, however the files are split.
  WeightStore a = WeightStore::OpenHfDir(one.out_dir);
  WeightStore b = WeightStore::OpenHfDir(sharded.out_dir);
  ASSERT_EQ(a.tensors().size(), b.tensors().size());
  uint64_t total = 0;
  for (const auto& [name, ta] : a.tensors()) {
    const StoredTensor& tb = b.Get(name);
    ASSERT_EQ(ta.bytes, tb.bytes) << name;
    EXPECT_EQ(std::memcmp(ta.data, tb.data, ta.bytes), 0) << name;
    total += ta.bytes;
  }
  EXPECT_EQ(index.at("metadata").at("total_size").get<uint64_t>(), total);
}

TEST_F(RandomModelTest, SeedChangesTheWeights) {
  RandomModelOptions a = Options("tiny-test", "a");
  RandomModelOptions b = Options("tiny-test", "b");
  b.seed = 7;
  WriteRandomModel(a);
  WriteRandomModel(b);
  WeightStore wa = WeightStore::OpenHfDir(a.out_dir), wb = WeightStore::OpenHfDir(b.out_dir);
  const StoredTensor& ta = wa.Get("model.layers.0.mlp.up_proj.weight");
  const StoredTensor& tb = wb.Get("model.layers.0.mlp.up_proj.weight");
  EXPECT_NE(std::memcmp(ta.data, tb.data, ta.bytes), 0);
}

TEST_F(RandomModelTest, MissingTokenizerFailsBeforeWritingAnything) {
  RandomModelOptions o = Options("tiny-test");
  o.tokenizer_path = (dir_ / "nowhere" / "tokenizer.model").string();
  try {
    WriteRandomModel(o);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(o.tokenizer_path), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(o.out_dir));
}

TEST_F(RandomModelTest, ExistingModelIsReplacedOnlyWhenAsked) {
  RandomModelOptions o = Options("tiny-test");
  WriteRandomModel(o);
  EXPECT_THROW(WriteRandomModel(o), Error);
  // A stale shard from an earlier, differently sharded model goes away.
  std::ofstream(fs::path(o.out_dir) / "model-00001-of-00009.safetensors") << "junk";
  o.overwrite = true;
  o.seed = 3;
  WriteRandomModel(o);
  EXPECT_FALSE(fs::exists(fs::path(o.out_dir) / "model-00001-of-00009.safetensors"));
  EXPECT_NO_THROW(WeightStore::OpenHfDir(o.out_dir));
}

}  // namespace
}  // namespace qlm
