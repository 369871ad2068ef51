#include "loaders/safetensors_writer.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "base/error.h"
#include "loaders/safetensors.h"
#include "loaders/weight_store.h"

namespace qlm {
namespace {

namespace fs = std::filesystem;

// A fresh directory per test, removed afterwards.
class SafetensorsWriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("qlm_st_writer_" + std::to_string(::getpid()) + "_" + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Path(const std::string& name) const { return (dir_ / name).string(); }

  fs::path dir_;
};

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::vector<uint8_t> Bytes(size_t n, uint8_t salt) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(i * 31 + salt);
  return v;
}

TEST_F(SafetensorsWriterTest, RoundTripsThroughTheParserAndWeightStore) {
  struct T {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    std::vector<uint8_t> data;
  };
  const std::vector<T> ts = {
      {"a.f32", DType::kF32, {3, 5}, Bytes(60, 1)},
      {"b.bf16", DType::kBF16, {7}, Bytes(14, 2)},  // odd element count: 14 bytes
      {"c.f16", DType::kF16, {2, 3, 1}, Bytes(12, 3)},
      {"d.empty", DType::kF32, {0, 4}, {}},
      {"e.scalar", DType::kI32, {}, Bytes(4, 4)},
      {"f.i32", DType::kI32, {9}, Bytes(36, 5)},
  };
  const std::string path = Path("model.safetensors");
  {
    SafetensorsWriter w(path);
    for (const T& t : ts) w.Declare(t.name, t.dtype, t.shape);
    w.SetMetadata("note", "hello");
    size_t total = 0;
    for (const T& t : ts) total += t.data.size();
    EXPECT_EQ(w.data_bytes(), total);
    // Stream all bytes in odd-sized chunks that straddle tensor boundaries.
    std::vector<uint8_t> all;
    for (const T& t : ts) all.insert(all.end(), t.data.begin(), t.data.end());
    for (size_t off = 0; off < all.size(); off += 7) {
      w.Write(all.data() + off, std::min<size_t>(7, all.size() - off));
    }
    EXPECT_EQ(w.bytes_written(), total);
    EXPECT_FALSE(fs::exists(path)) << "the file appears only when finished";
    w.Finish();
  }
  const std::string file = ReadAll(path);
  ASSERT_GE(file.size(), 8u);
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t{static_cast<uint8_t>(file[i])} << (8 * i);
  EXPECT_EQ((8 + n) % 8, 0u) << "data section must start 8-byte aligned";
  EXPECT_EQ(file[8], '{');
  const std::string header = file.substr(8, n);
  EXPECT_EQ(header.find_last_not_of(' '), header.rfind('}')) << "padding is trailing spaces";

  const SafetensorsHeader h =
      ParseSafetensors(reinterpret_cast<const uint8_t*>(file.data()), file.size(), path);
  EXPECT_EQ(h.data_offset, 8 + n);
  ASSERT_EQ(h.tensors.size(), ts.size());
  EXPECT_EQ(h.metadata.at("format"), "pt");
  EXPECT_EQ(h.metadata.at("note"), "hello");

  WeightStore ws = WeightStore::OpenSafetensors(path);
  EXPECT_EQ(ws.tensors().size(), ts.size());
  for (const T& t : ts) {
    SCOPED_TRACE(t.name);
    const StoredTensor& st = ws.Get(t.name);
    EXPECT_EQ(st.dtype, t.dtype);
    EXPECT_EQ(st.shape, t.shape);
    ASSERT_EQ(st.bytes, t.data.size());
    if (!t.data.empty()) {
      EXPECT_EQ(std::memcmp(st.data, t.data.data(), st.bytes), 0);
    }
  }
}

TEST_F(SafetensorsWriterTest, WriteTensorChecksOrderAndSize) {
  const std::string path = Path("x.safetensors");
  SafetensorsWriter w(path);
  w.Declare("first", DType::kBF16, {4});
  w.Declare("second", DType::kF32, {2});
  const auto a = Bytes(8, 1), b = Bytes(8, 2);
  EXPECT_THROW(w.WriteTensor("second", b.data(), b.size()), Error);  // out of order
  EXPECT_THROW(w.WriteTensor("first", a.data(), 6), Error);          // wrong size
  EXPECT_THROW(w.WriteTensor("third", a.data(), 8), Error);          // undeclared
  w.WriteTensor("first", a.data(), a.size());
  EXPECT_THROW(w.Declare("late", DType::kF32, {1}), Error);  // after data
  w.WriteTensor("second", b.data(), b.size());
  w.Finish();
  WeightStore ws = WeightStore::OpenSafetensors(path);
  EXPECT_EQ(std::memcmp(ws.Get("second").data, b.data(), 8), 0);
}

TEST_F(SafetensorsWriterTest, RejectsWritingPastTheDeclaredData) {
  SafetensorsWriter w(Path("x.safetensors"));
  w.Declare("t", DType::kF32, {2});
  const auto bytes = Bytes(12, 0);
  w.Write(bytes.data(), 4);
  try {
    w.Write(bytes.data(), 8);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("passes the declared 8-byte data section"),
              std::string::npos)
        << e.what();
  }
}

TEST_F(SafetensorsWriterTest, IncompleteFileIsAnErrorAndLeavesNothing) {
  const std::string path = Path("x.safetensors");
  {
    SafetensorsWriter w(path);
    w.Declare("t", DType::kF32, {4});
    const auto bytes = Bytes(8, 0);
    w.Write(bytes.data(), bytes.size());
    EXPECT_THROW(w.Finish(), Error);
  }
  EXPECT_FALSE(fs::exists(path));
  EXPECT_FALSE(fs::exists(path + ".tmp"));
}

TEST_F(SafetensorsWriterTest, AbandonedWriterRemovesItsPartialFile) {
  const std::string path = Path("x.safetensors");
  {
    SafetensorsWriter w(path);
    w.Declare("t", DType::kF32, {4});
    const auto bytes = Bytes(8, 0);
    w.Write(bytes.data(), bytes.size());
    EXPECT_TRUE(fs::exists(path + ".tmp"));
  }
  EXPECT_FALSE(fs::exists(path));
  EXPECT_FALSE(fs::exists(path + ".tmp"));
}

TEST_F(SafetensorsWriterTest, UnwritablePathNamesTheFile) {
  const std::string path = Path("no/such/dir/x.safetensors");
  SafetensorsWriter w(path);
  w.Declare("t", DType::kF32, {1});
  try {
    w.Finish();
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no/such/dir/x.safetensors"), std::string::npos)
        << e.what();
  }
}

TEST_F(SafetensorsWriterTest, EmptyFileHasOnlyAHeader) {
  const std::string path = Path("empty.safetensors");
  SafetensorsWriter w(path);
  w.Finish();
  const std::string file = ReadAll(path);
  EXPECT_EQ(file.size() % 8, 0u);
  const SafetensorsHeader h =
      ParseSafetensors(reinterpret_cast<const uint8_t*>(file.data()), file.size(), path);
  EXPECT_TRUE(h.tensors.empty());
  EXPECT_EQ(h.data_size, 0u);
}

TEST(SafetensorsHeader, RejectsBadDeclarations) {
  EXPECT_THROW(EncodeSafetensorsHeader({{"a", DType::kF32, {1}}, {"a", DType::kF32, {1}}}, {}),
               Error);
  EXPECT_THROW(EncodeSafetensorsHeader({{"", DType::kF32, {1}}}, {}), Error);
  EXPECT_THROW(EncodeSafetensorsHeader({{"__metadata__", DType::kF32, {1}}}, {}), Error);
  EXPECT_THROW(EncodeSafetensorsHeader({{"neg", DType::kF32, {2, -1}}}, {}), Error);
  EXPECT_THROW(
      EncodeSafetensorsHeader({{"huge", DType::kF32, {int64_t{1} << 40, int64_t{1} << 40}}}, {}),
      Error);
  SafetensorsWriter w("/nonexistent-dir/x.safetensors");
  w.Declare("a", DType::kF32, {1});
  EXPECT_THROW(w.Declare("a", DType::kF32, {1}), Error);
}

TEST(SafetensorsHeader, OffsetsAreContiguousInDeclarationOrder) {
  const std::string block = EncodeSafetensorsHeader(
      {{"z", DType::kF32, {3}}, {"a", DType::kBF16, {5}}, {"m", DType::kI32, {1}}}, {});
  ASSERT_EQ(block.size() % 8, 0u);
  // Parse it with an appended data section of the right size.
  std::string file = block + std::string(12 + 10 + 4, '\0');
  const SafetensorsHeader h =
      ParseSafetensors(reinterpret_cast<const uint8_t*>(file.data()), file.size(), "mem");
  ASSERT_EQ(h.tensors.size(), 3u);
  EXPECT_EQ(h.tensors[0].name, "z");
  EXPECT_EQ(h.tensors[0].begin, 0u);
  EXPECT_EQ(h.tensors[1].name, "a");
  EXPECT_EQ(h.tensors[1].begin, 12u);
  EXPECT_EQ(h.tensors[2].name, "m");
  EXPECT_EQ(h.tensors[2].begin, 22u);
  EXPECT_EQ(h.tensors[2].end, 26u);
  EXPECT_TRUE(h.metadata.empty());
}

}  // namespace
}  // namespace qlm
