// WeightStore: single files, Hugging Face directories (single and sharded),
// and the errors for broken directories.
#include "loaders/weight_store.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/error.h"
#include "tests/loaders/shared_data.h"

namespace qlm {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// A fresh temporary directory, removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    static int counter = 0;
    path_ = fs::temp_directory_path() /
            ("qlm_ws_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string str() const { return path_.string(); }
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// Writes a safetensors file of F32 tensors; tensor i holds the values
// first_value + i*100 + j.
void WriteF32Safetensors(const std::string& path, const std::vector<std::string>& names, int64_t n,
                         float first_value) {
  json header;
  std::string data;
  for (size_t i = 0; i < names.size(); ++i) {
    const size_t begin = data.size();
    for (int64_t j = 0; j < n; ++j) {
      const float v = first_value + static_cast<float>(i * 100 + j);
      char b[4];
      std::memcpy(b, &v, 4);
      data.append(b, 4);
    }
    header[names[i]] = {{"dtype", "F32"}, {"shape", {n}}, {"data_offsets", {begin, data.size()}}};
  }
  std::string h = header.dump();
  while ((8 + h.size()) % 8 != 0) h += ' ';
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((h.size() >> (8 * i)) & 0xFF);
  WriteFile(path, out + h + data);
}

float ReadF32(const StoredTensor& t, int64_t i) {
  float v;
  std::memcpy(&v, t.data + i * 4, 4);
  return v;
}

std::string ErrorOf(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no qlm::Error thrown";
  return "";
}

void WriteIndex(const std::string& path, const json& weight_map) {
  WriteFile(path, json{{"metadata", {{"total_size", 0}}}, {"weight_map", weight_map}}.dump(2));
}

TEST(WeightStore, DTypeNamesAndSizes) {
  EXPECT_STREQ(DTypeName(DType::kF32), "F32");
  EXPECT_STREQ(DTypeName(DType::kBF16), "BF16");
  EXPECT_STREQ(DTypeName(DType::kF16), "F16");
  EXPECT_STREQ(DTypeName(DType::kI32), "I32");
  EXPECT_EQ(DTypeSize(DType::kF32), 4u);
  EXPECT_EQ(DTypeSize(DType::kBF16), 2u);
  EXPECT_EQ(DTypeSize(DType::kF16), 2u);
  EXPECT_EQ(DTypeSize(DType::kI32), 4u);
}

TEST(WeightStore, OpensSingleFileAndReadsData) {
  TempDir dir;
  WriteF32Safetensors(dir / "model.safetensors", {"x", "y"}, 5, 1.0f);
  const WeightStore ws = WeightStore::OpenHfDir(dir.str());
  ASSERT_EQ(ws.tensors().size(), 2u);
  const StoredTensor& y = ws.Get("y");
  EXPECT_EQ(y.dtype, DType::kF32);
  EXPECT_EQ(y.shape, (std::vector<int64_t>{5}));
  EXPECT_EQ(y.numel(), 5);
  EXPECT_EQ(y.bytes, 20u);
  EXPECT_EQ(ReadF32(y, 0), 101.0f);
  EXPECT_EQ(ReadF32(y, 4), 105.0f);
  EXPECT_EQ(ws.Find("z"), nullptr);
  EXPECT_EQ(ws.FileOf("x"), dir / "model.safetensors");
  EXPECT_EQ(ws.mapped_bytes(), fs::file_size(dir / "model.safetensors"));

  const std::string msg = ErrorOf([&] { ws.Get("lm_head.weight"); });
  EXPECT_NE(msg.find("missing tensor lm_head.weight"), std::string::npos) << msg;
  EXPECT_NE(msg.find(dir.str()), std::string::npos) << msg;
}

TEST(WeightStore, OpensShardedDirectory) {
  TempDir dir;
  WriteF32Safetensors(dir / "model-00001-of-00002.safetensors", {"a", "b"}, 3, 0.0f);
  WriteF32Safetensors(dir / "model-00002-of-00002.safetensors", {"c"}, 4, 1000.0f);
  WriteIndex(dir / "model.safetensors.index.json", {{"a", "model-00001-of-00002.safetensors"},
                                                    {"b", "model-00001-of-00002.safetensors"},
                                                    {"c", "model-00002-of-00002.safetensors"}});
  const WeightStore ws = WeightStore::OpenHfDir(dir.str());
  ASSERT_EQ(ws.tensors().size(), 3u);
  EXPECT_EQ(ReadF32(ws.Get("b"), 2), 102.0f);
  EXPECT_EQ(ReadF32(ws.Get("c"), 3), 1003.0f);
  EXPECT_EQ(ws.Get("c").shape, (std::vector<int64_t>{4}));
  EXPECT_EQ(ws.FileOf("c"), dir / "model-00002-of-00002.safetensors");
  EXPECT_EQ(ws.mapped_bytes(), fs::file_size(dir / "model-00001-of-00002.safetensors") +
                                   fs::file_size(dir / "model-00002-of-00002.safetensors"));
}

TEST(WeightStore, SingleFileWinsOverIndex) {
  TempDir dir;
  WriteF32Safetensors(dir / "model.safetensors", {"only"}, 2, 7.0f);
  WriteIndex(dir / "model.safetensors.index.json", {{"other", "missing.safetensors"}});
  const WeightStore ws = WeightStore::OpenHfDir(dir.str());
  EXPECT_NE(ws.Find("only"), nullptr);
  EXPECT_EQ(ws.Find("other"), nullptr);
}

TEST(WeightStore, ShardErrorsNameTheProblem) {
  {  // The same tensor in two shards.
    TempDir dir;
    WriteF32Safetensors(dir / "s1.safetensors", {"a", "dup"}, 2, 0.0f);
    WriteF32Safetensors(dir / "s2.safetensors", {"dup"}, 2, 0.0f);
    WriteIndex(dir / "model.safetensors.index.json",
               {{"a", "s1.safetensors"}, {"dup", "s2.safetensors"}});
    const std::string msg = ErrorOf([&] { WeightStore::OpenHfDir(dir.str()); });
    EXPECT_NE(msg.find("'dup'"), std::string::npos) << msg;
    EXPECT_NE(msg.find(dir / "s1.safetensors"), std::string::npos) << msg;
    EXPECT_NE(msg.find(dir / "s2.safetensors"), std::string::npos) << msg;
  }
  {  // A shard that does not exist.
    TempDir dir;
    WriteF32Safetensors(dir / "s1.safetensors", {"a"}, 2, 0.0f);
    WriteIndex(dir / "model.safetensors.index.json",
               {{"a", "s1.safetensors"}, {"b", "s9.safetensors"}});
    const std::string msg = ErrorOf([&] { WeightStore::OpenHfDir(dir.str()); });
    EXPECT_NE(msg.find(dir / "s9.safetensors"), std::string::npos) << msg;
  }
  {  // The index puts a tensor in the wrong shard / in no shard.
    TempDir dir;
    WriteF32Safetensors(dir / "s1.safetensors", {"a"}, 2, 0.0f);
    WriteF32Safetensors(dir / "s2.safetensors", {"b"}, 2, 0.0f);
    WriteIndex(dir / "model.safetensors.index.json",
               {{"a", "s2.safetensors"}, {"b", "s2.safetensors"}});
    std::string msg = ErrorOf([&] { WeightStore::OpenHfDir(dir.str()); });
    EXPECT_NE(msg.find("'a'"), std::string::npos) << msg;
    WriteIndex(dir / "model.safetensors.index.json",
               {{"a", "s1.safetensors"}, {"ghost", "s2.safetensors"}});
    msg = ErrorOf([&] { WeightStore::OpenHfDir(dir.str()); });
    EXPECT_NE(msg.find("'ghost'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("no shard"), std::string::npos) << msg;
  }
  {  // Shard names must stay inside the directory.
    TempDir dir;
    for (const char* bad : {"../model.safetensors", "/etc/passwd", "sub/x.safetensors", ".."}) {
      WriteIndex(dir / "model.safetensors.index.json", {{"a", bad}});
      const std::string msg = ErrorOf([&] { WeightStore::OpenHfDir(dir.str()); });
      EXPECT_NE(msg.find("not a plain file name"), std::string::npos) << msg;
    }
  }
  {  // A malformed index.
    TempDir dir;
    const std::string index = dir / "model.safetensors.index.json";
    WriteFile(index, "{\"weight_map\": ");
    EXPECT_NE(ErrorOf([&] { WeightStore::OpenHfDir(dir.str()); }).find("not valid JSON"),
              std::string::npos);
    WriteFile(index, "{\"metadata\": {}}");
    EXPECT_NE(ErrorOf([&] { WeightStore::OpenHfDir(dir.str()); }).find("weight_map"),
              std::string::npos);
    WriteFile(index, "{\"weight_map\": [\"a\"]}");
    EXPECT_NE(ErrorOf([&] { WeightStore::OpenHfDir(dir.str()); }).find("weight_map"),
              std::string::npos);
    WriteFile(index, "{\"weight_map\": {\"a\": 3}}");
    EXPECT_NE(ErrorOf([&] { WeightStore::OpenHfDir(dir.str()); }).find("'a'"), std::string::npos);
    WriteFile(index, "{\"weight_map\": {}}");
    EXPECT_NE(ErrorOf([&] { WeightStore::OpenHfDir(dir.str()); }).find("no tensors"),
              std::string::npos);
  }
  {  // A malformed shard names the shard.
    TempDir dir;
    WriteFile(dir / "s1.safetensors", std::string(20, '\0'));
    WriteIndex(dir / "model.safetensors.index.json", {{"a", "s1.safetensors"}});
    const std::string msg = ErrorOf([&] { WeightStore::OpenHfDir(dir.str()); });
    EXPECT_NE(msg.find(dir / "s1.safetensors"), std::string::npos) << msg;
  }
}

TEST(WeightStore, DirectoryErrors) {
  TempDir dir;
  std::string msg = ErrorOf([&] { WeightStore::OpenHfDir(dir.str()); });
  EXPECT_NE(msg.find("model.safetensors"), std::string::npos) << msg;
  EXPECT_NE(msg.find(dir.str()), std::string::npos) << msg;
  msg = ErrorOf([&] { WeightStore::OpenHfDir(dir / "nope"); });
  EXPECT_NE(msg.find("does not exist"), std::string::npos) << msg;
  msg = ErrorOf([&] { WeightStore::OpenSafetensors(dir / "nope.safetensors"); });
  EXPECT_NE(msg.find(dir / "nope.safetensors"), std::string::npos) << msg;
  // An empty file and a directory posing as the model file.
  WriteFile(dir / "empty.safetensors", "");
  msg = ErrorOf([&] { WeightStore::OpenSafetensors(dir / "empty.safetensors"); });
  EXPECT_NE(msg.find("too short"), std::string::npos) << msg;
  fs::create_directories(dir / "model.safetensors");
  msg = ErrorOf([&] { WeightStore::OpenHfDir(dir.str()); });
  EXPECT_FALSE(msg.empty());
}

TEST(WeightStoreShared, OpensEveryModelDirectory) {
  for (const char* rel : {"models/austen-gemma3", "fixtures/tiny-llama", "fixtures/tiny-gemma",
                          "fixtures/tiny-gemma2", "gptq/austen-gemma3-gptq-g128"}) {
    SCOPED_TRACE(rel);
    QLM_SHARED_PATH(dir, rel);
    const WeightStore ws = WeightStore::OpenHfDir(dir);
    EXPECT_EQ(ws.mapped_bytes(), fs::file_size(dir + "/model.safetensors"));
    const StoredTensor& embed = ws.Get("model.embed_tokens.weight");
    EXPECT_EQ(embed.shape.at(0), 8000);
    EXPECT_EQ(static_cast<size_t>(embed.numel()) * DTypeSize(embed.dtype), embed.bytes);
    // Every view lies inside the mapping.
    for (const auto& [name, t] : ws.tensors()) {
      EXPECT_EQ(static_cast<size_t>(t.numel()) * DTypeSize(t.dtype), t.bytes) << name;
    }
  }
}

TEST(WeightStoreShared, AustenEmbeddingValuesAreBf16) {
  QLM_SHARED_PATH(dir, "models/austen-gemma3");
  const WeightStore ws = WeightStore::OpenHfDir(dir);
  const StoredTensor& e = ws.Get("model.embed_tokens.weight");
  ASSERT_EQ(e.dtype, DType::kBF16);
  // Trained weights: finite, not all zero, small.
  double sum_sq = 0;
  for (int64_t i = 0; i < 4096; ++i) {
    uint16_t bits;
    std::memcpy(&bits, e.data + 2 * i, 2);
    const uint32_t f32 = uint32_t{bits} << 16;
    float v;
    std::memcpy(&v, &f32, 4);
    ASSERT_TRUE(std::isfinite(v));
    sum_sq += double{v} * v;
  }
  EXPECT_GT(sum_sq, 0.0);
  EXPECT_LT(sum_sq / 4096, 1.0);
}

}  // namespace
}  // namespace qlm
