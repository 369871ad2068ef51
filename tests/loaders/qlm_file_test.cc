// The .qlm file: XXH64, round trips of every format, and the reader's
// errors for broken files (it is a pure function over bytes, so these tests
// edit files in memory: truncations, corrupt bytes, rewritten metadata).
#include "loaders/qlm_file.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "base/aligned_buffer.h"
#include "base/error.h"
#include "loaders/xxh64.h"
#include "quant/quantize.h"

namespace qlm {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

template <class Fn>
void ExpectError(Fn&& fn, const std::string& needle) {
  try {
    fn();
    ADD_FAILURE() << "expected qlm::Error containing \"" << needle << "\"";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos)
        << "message: " << e.what() << "\nexpected to contain: " << needle;
  }
}

std::string TempPath(const std::string& name) {
  static int counter = 0;
  return (fs::temp_directory_path() / ("qlm_file_test_" + std::to_string(::getpid()) + "_" +
                                       std::to_string(counter++) + "_" + name))
      .string();
}

std::vector<uint8_t> ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

// A 64-byte-aligned copy of `bytes` (as a mapping would be).
AlignedBuffer Aligned(const std::vector<uint8_t>& bytes) {
  AlignedBuffer b(bytes.size());
  if (!bytes.empty()) std::memcpy(b.data(), bytes.data(), bytes.size());
  return b;
}

QlmContents Parse(const std::vector<uint8_t>& bytes, bool verify = false) {
  const AlignedBuffer b = Aligned(bytes);
  QlmReadOptions o;
  o.verify_checksums = verify;
  return ParseQlmFile(b.data(), bytes.size(), "test.qlm", o);
}

// ---- XXH64 ----

TEST(Xxh64, KnownVectors) {
  EXPECT_EQ(Xxh64("", 0), 0xEF46DB3751D8E999ull);
  const std::string s = "Nobody inspects the spammish repetition";
  EXPECT_EQ(Xxh64(s.data(), s.size()), 0xFBCEA83C8A378BF1ull);
}

TEST(Xxh64, StreamEqualsOneShot) {
  std::mt19937 rng(1);
  std::vector<uint8_t> data(300);
  for (auto& b : data) b = static_cast<uint8_t>(rng());
  for (size_t n : {0, 1, 3, 4, 7, 8, 31, 32, 33, 63, 64, 65, 100, 300}) {
    const uint64_t want = Xxh64(data.data(), n, 42);
    for (size_t cut1 = 0; cut1 <= n; cut1 += 1 + n / 13) {
      for (size_t cut2 = cut1; cut2 <= n; cut2 += 1 + n / 7) {
        Xxh64Stream h(42);
        h.Update(data.data(), cut1);
        h.Update(data.data() + cut1, cut2 - cut1);
        h.Update(data.data() + cut2, n - cut2);
        ASSERT_EQ(h.Digest(), want) << "n=" << n << " cuts " << cut1 << "," << cut2;
      }
    }
  }
}

// ---- Round trips ----

struct TestTensor {
  std::string name;
  std::vector<int64_t> shape;
  QuantizedTensor t;
};

std::vector<float> RandomWeights(uint64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.0f, 0.05f);
  std::vector<float> w(n);
  for (auto& x : w) x = g(rng);
  return w;
}

// One tensor of every format, including q4 with a permutation and sfp8
// with its per-tensor scale, and a 1-D norm vector.
std::vector<TestTensor> EveryFormat() {
  std::vector<TestTensor> out;
  const auto add = [&](const std::string& name, std::vector<int64_t> shape, Format f,
                       QuantizeOptions o = {}) {
    const uint64_t rows = shape.size() == 2 ? uint64_t(shape[0]) : 1;
    const uint64_t cols = uint64_t(shape.back());
    const std::vector<float> w = RandomWeights(rows * cols, uint32_t(out.size() + 1));
    out.push_back({name, shape, Quantize(f, w.data(), rows, cols, o)});
  };
  add("norm", {17}, Format::kF32);
  add("w.f32", {3, 5}, Format::kF32);
  add("w.bf16", {4, 7}, Format::kBF16);
  add("w.int8", {3, 33}, Format::kInt8);
  QuantizeOptions g32;
  g32.group_size = 32;
  add("w.q4.g32", {5, 100}, Format::kQ4, g32);
  QuantizeOptions sym64;
  sym64.group_size = 64;
  sym64.asymmetric = false;
  add("w.q4.g64.sym", {2, 64}, Format::kQ4, sym64);
  std::vector<int32_t> perm(130);
  for (int i = 0; i < 130; ++i) perm[i] = (i * 7) % 130;  // 7 is coprime with 130
  QuantizeOptions permuted;
  permuted.perm = perm.data();
  add("w.q4.perm", {4, 130}, Format::kQ4, permuted);
  add("w.sfp8", {6, 9}, Format::kSFP8);
  return out;
}

std::string TokenizerBytes() {
  std::string t;
  for (int i = 0; i < 1000; ++i) t.push_back(static_cast<char>((i * 37) % 256));  // has NULs
  return t;
}

QlmFileMetadata TestMetadata() {
  QlmFileMetadata m;
  m.config_json = "{\"model_type\": \"llama\",\n  \"vocab_size\": 8000}\n";
  m.generation_config_json = "{\"eos_token_id\": 1}";
  m.recipe_json = R"({"format": "q4", "group_size": 128, "method": "rtn"})";
  return m;
}

// Writes the standard test file and returns its bytes.
std::vector<uint8_t> WriteTestFile(const std::vector<TestTensor>& tensors) {
  const std::string path = TempPath("rt.qlm");
  {
    QlmFileWriter w(path, TestMetadata(), TokenizerBytes());
    for (const TestTensor& t : tensors) w.AddTensor(t.name, t.shape, t.t.view());
    w.Finish();
  }
  std::vector<uint8_t> bytes = ReadBytes(path);
  fs::remove(path);
  return bytes;
}

TEST(QlmFile, RoundTripEveryFormat) {
  const std::vector<TestTensor> tensors = EveryFormat();
  const std::string path = TempPath("rt.qlm");
  uint64_t size = 0;
  {
    QlmFileWriter w(path, TestMetadata(), TokenizerBytes());
    for (const TestTensor& t : tensors) w.AddTensor(t.name, t.shape, t.t.view());
    EXPECT_FALSE(fs::exists(path)) << "only PATH.partial exists until Finish";
    size = w.Finish();
  }
  ASSERT_TRUE(fs::exists(path));
  EXPECT_FALSE(fs::exists(path + ".partial"));
  EXPECT_EQ(fs::file_size(path), size);
  EXPECT_EQ(size % kQlmPageBytes, 0u);
  EXPECT_TRUE(LooksLikeQlmFile(path));

  QlmReadOptions verify;
  verify.verify_checksums = true;
  const QlmFile f = QlmFile::Open(path, verify);
  const QlmContents& c = f.contents();
  EXPECT_EQ(c.version, kQlmVersion);
  EXPECT_EQ(c.metadata.config_json, TestMetadata().config_json);
  EXPECT_EQ(c.metadata.generation_config_json, TestMetadata().generation_config_json);
  EXPECT_EQ(json::parse(c.metadata.recipe_json), json::parse(TestMetadata().recipe_json));
  EXPECT_EQ(std::string(c.tokenizer_proto), TokenizerBytes());
  ASSERT_EQ(c.tensors.size(), tensors.size());
  const uint8_t* base = reinterpret_cast<const uint8_t*>(c.tokenizer_proto.data()) - 128;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const TestTensor& want = tensors[i];
    const QlmTensorEntry* e = c.Find(want.name);
    ASSERT_NE(e, nullptr) << want.name;
    EXPECT_EQ(e, &c.tensors[i]) << "file order is kept";
    EXPECT_EQ(e->shape, want.shape);
    const TensorDesc& d = e->view.desc;
    EXPECT_EQ(d.format, want.t.desc.format) << want.name;
    EXPECT_EQ(d.rows, want.t.desc.rows);
    EXPECT_EQ(d.cols, want.t.desc.cols);
    EXPECT_EQ(d.group_size, want.t.desc.group_size);
    EXPECT_EQ(d.has_perm, want.t.desc.has_perm);
    EXPECT_EQ(d.tensor_scale, want.t.desc.tensor_scale) << want.name;
    EXPECT_EQ(d.total_bytes, want.t.desc.total_bytes);
    // A view straight into the mapping, 64-byte aligned, same bytes.
    EXPECT_EQ(e->view.data, base + e->offset) << want.name;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(e->view.data) % 64, 0u);
    EXPECT_EQ(std::memcmp(e->view.data, want.t.blob.data(), d.total_bytes), 0) << want.name;
    std::vector<float> a(d.cols), b(d.cols);
    for (uint64_t r = 0; r < d.rows; ++r) {
      DequantizeRow(e->view, r, a.data());
      DequantizeRow(want.t.view(), r, b.data());
      ASSERT_EQ(std::memcmp(a.data(), b.data(), 4 * d.cols), 0) << want.name << " row " << r;
    }
  }
  EXPECT_TRUE(c.tensors[6].view.desc.has_perm);
  EXPECT_NE(c.tensors[6].view.perm, nullptr);
  EXPECT_NE(c.tensors[7].view.desc.tensor_scale, 1.0f) << "sfp8 scale is kept";
  EXPECT_EQ(c.Find("nope"), nullptr);
  fs::remove(path);
}

TEST(QlmFile, WritesViewsThatAreNotOneBlob) {
  // An f32 tensor viewed in unaligned, unpadded memory (like a safetensors
  // mapping): the writer copies its section and pads it.
  std::vector<uint8_t> raw(1 + 3 * 5 * 4);
  const std::vector<float> w = RandomWeights(15, 9);
  std::memcpy(raw.data() + 1, w.data(), 60);
  QTensor v;
  v.desc = MakeTensorDesc(Format::kF32, 3, 5);
  v.data = raw.data() + 1;
  const std::string path = TempPath("view.qlm");
  {
    QlmFileWriter wr(path, TestMetadata(), "");
    const int64_t shape[] = {3, 5};
    wr.AddTensor("x", shape, v);
    wr.Finish();
  }
  const QlmFile f = QlmFile::Open(path, {.verify_checksums = true});
  const QlmTensorEntry* e = f.contents().Find("x");
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(std::memcmp(e->view.data, w.data(), 60), 0);
  EXPECT_TRUE(f.contents().tokenizer_proto.empty());
  fs::remove(path);
}

TEST(QlmFile, WriterErrors) {
  const std::vector<TestTensor> tensors = EveryFormat();
  const std::string path = TempPath("bad.qlm");
  ExpectError([&] { QlmFileWriter w(path, {"{}", "", "[1]"}, ""); }, "must be a JSON object");
  ExpectError([&] { QlmFileWriter w("/nonexistent-dir/x.qlm", TestMetadata(), ""); },
              "cannot create /nonexistent-dir/x.qlm.partial");
  {
    QlmFileWriter w(path, TestMetadata(), "");
    w.AddTensor("a", tensors[1].shape, tensors[1].t.view());
    ExpectError([&] { w.AddTensor("a", tensors[1].shape, tensors[1].t.view()); }, "added twice");
    ExpectError([&] { w.AddTensor("", tensors[1].shape, tensors[1].t.view()); }, "empty name");
    const int64_t wrong[] = {5, 3};
    ExpectError([&] { w.AddTensor("b", wrong, tensors[1].t.view()); }, "shape does not match");
    const int64_t flat[] = {15};
    ExpectError([&] { w.AddTensor("b", flat, tensors[1].t.view()); }, "shape does not match");
    QTensor broken = tensors[3].t.view();
    broken.scales = nullptr;
    ExpectError([&] { w.AddTensor("c", tensors[3].shape, broken); }, "pointer is null");
    QTensor odd = tensors[1].t.view();
    odd.desc.total_bytes += 64;
    ExpectError([&] { w.AddTensor("d", tensors[1].shape, odd); }, "not the layout");
    EXPECT_TRUE(fs::exists(path + ".partial"));
  }
  EXPECT_FALSE(fs::exists(path + ".partial")) << "an unfinished writer removes its file";
  EXPECT_FALSE(fs::exists(path));
}

// ---- Broken files ----

constexpr size_t kHdrVersion = 8, kHdrEndian = 12, kHdrFileBytes = 24, kHdrDataBytes = 40,
                 kHdrMetaOffset = 48, kHdrMetaBytes = 56, kHdrMetaSum = 64, kHdrSum = 120;

uint64_t Get64(const std::vector<uint8_t>& b, size_t off) {
  uint64_t v;
  std::memcpy(&v, b.data() + off, 8);
  return v;
}
void Put64(std::vector<uint8_t>& b, size_t off, uint64_t v) { std::memcpy(b.data() + off, &v, 8); }
void Put32(std::vector<uint8_t>& b, size_t off, uint32_t v) { std::memcpy(b.data() + off, &v, 4); }
void Reseal(std::vector<uint8_t>& b) { Put64(b, kHdrSum, Xxh64(b.data(), kHdrSum)); }

json Metadata(const std::vector<uint8_t>& b) {
  const uint64_t off = Get64(b, kHdrMetaOffset), n = Get64(b, kHdrMetaBytes);
  return json::parse(b.begin() + off, b.begin() + off + n);
}

// The file with its metadata replaced by `meta` (checksums and sizes fixed
// up, so that only the metadata's content is wrong).
std::vector<uint8_t> WithMetadata(const std::vector<uint8_t>& b, const json& meta) {
  const uint64_t off = Get64(b, kHdrMetaOffset);
  std::vector<uint8_t> out(b.begin(), b.begin() + off);
  const std::string text = meta.dump();
  out.insert(out.end(), text.begin(), text.end());
  out.resize(AlignUp(out.size(), kQlmPageBytes), 0);
  Put64(out, kHdrFileBytes, out.size());
  Put64(out, kHdrMetaBytes, text.size());
  Put64(out, kHdrMetaSum, Xxh64(text.data(), text.size()));
  Reseal(out);
  return out;
}

class QlmFileErrors : public ::testing::Test {
 protected:
  void SetUp() override { good_ = WriteTestFile(EveryFormat()); }
  std::vector<uint8_t> good_;
};

TEST_F(QlmFileErrors, GoodFileParses) { EXPECT_EQ(Parse(good_, true).tensors.size(), 8u); }

TEST_F(QlmFileErrors, BadMagic) {
  std::vector<uint8_t> b = good_;
  b[1] = 'X';
  ExpectError([&] { Parse(b); }, "not a .qlm file (bad magic)");
  ExpectError([&] { Parse(std::vector<uint8_t>(good_.begin(), good_.begin() + 100)); },
              "too small to be a .qlm file (100 bytes)");
}

TEST_F(QlmFileErrors, VersionAndEndianness) {
  std::vector<uint8_t> b = good_;
  Put32(b, kHdrVersion, 2);  // checked before the header checksum: a future
                             // version may lay its header out differently
  ExpectError([&] { Parse(b); }, "format version 2 is newer than this qlm supports (1)");
  Put32(b, kHdrVersion, 0);
  ExpectError([&] { Parse(b); }, "invalid format version 0");
  b = good_;
  Put32(b, kHdrEndian, 0x0D0C0B0A);
  Reseal(b);
  ExpectError([&] { Parse(b); }, "big-endian");
  Put32(b, kHdrEndian, 12345);
  Reseal(b);
  ExpectError([&] { Parse(b); }, "bad endianness check");
}

TEST_F(QlmFileErrors, Checksums) {
  std::vector<uint8_t> b = good_;
  b[100] ^= 1;  // a reserved header byte
  ExpectError([&] { Parse(b); }, "header checksum mismatch");
  Reseal(b);
  ExpectError([&] { Parse(b); }, "reserved header bytes");

  b = good_;
  b[Get64(b, kHdrMetaOffset) + 5] ^= 0x20;
  ExpectError([&] { Parse(b); }, "metadata checksum mismatch");

  // Tensor bytes: only checked with verify_checksums; the tokenizer always.
  const QlmContents c = Parse(good_);
  for (const QlmTensorEntry& t : c.tensors) {
    b = good_;
    b[t.offset + t.view.desc.data_bytes / 2] ^= 0x10;  // a code, never the permutation
    EXPECT_NO_THROW(Parse(b));
    ExpectError([&] { Parse(b, true); }, "tensor '" + t.name + "' checksum mismatch");
  }
  b = good_;
  b[c.tokenizer_offset + 10] ^= 1;
  ExpectError([&] { Parse(b); }, "tokenizer checksum mismatch");
}

TEST_F(QlmFileErrors, TruncatedAnywhere) {
  // Every truncation is caught by the header's file size...
  for (size_t n = 0; n < good_.size(); ++n) {
    std::vector<uint8_t> b(good_.begin(), good_.begin() + n);
    EXPECT_THROW(Parse(b), Error) << "truncated to " << n;
  }
  // ...and, with a header that agrees with the truncated size, at every
  // section boundary by the offset checks.
  const QlmContents c = Parse(good_);
  std::vector<size_t> cuts = {128, 192, c.tokenizer_offset + 1000, Get64(good_, kHdrMetaOffset),
                              Get64(good_, kHdrMetaOffset) + Get64(good_, kHdrMetaBytes) - 1};
  for (const QlmTensorEntry& t : c.tensors) {
    cuts.push_back(t.offset);
    cuts.push_back(t.offset + t.bytes - 1);
  }
  for (const size_t n : cuts) {
    std::vector<uint8_t> b(good_.begin(), good_.begin() + n);
    Put64(b, kHdrFileBytes, n);
    Reseal(b);
    EXPECT_THROW(Parse(b), Error) << "consistent header, truncated to " << n;
  }
}

TEST_F(QlmFileErrors, FileSizeAndSections) {
  std::vector<uint8_t> b = good_;
  b.resize(b.size() + 4096);
  ExpectError([&] { Parse(b); }, "but it has");
  b = good_;
  Put64(b, kHdrDataBytes, b.size());
  Reseal(b);
  ExpectError([&] { Parse(b); }, "data section");
  b = good_;
  Put64(b, kHdrMetaBytes, b.size());
  Reseal(b);
  ExpectError([&] { Parse(b); }, "metadata [");
  b = good_;
  Put64(b, kHdrMetaOffset, ~uint64_t{0} - 10);
  Reseal(b);
  ExpectError([&] { Parse(b); }, "metadata [");
}

TEST_F(QlmFileErrors, BadDirectory) {
  const json meta = Metadata(good_);
  ASSERT_NO_THROW(Parse(WithMetadata(good_, meta)));
  struct Case {
    const char* what;
    std::function<void(json&)> edit;
    const char* error;
  };
  const auto t = [](json& m, int i) -> json& { return m["tensors"][i]; };
  const uint64_t data_end = Get64(good_, kHdrMetaOffset);
  const Case cases[] = {
      {"offset past the data", [&](json& m) { t(m, 1)["offset"] = data_end; },
       "outside the data section"},
      {"offset overflows", [&](json& m) { t(m, 1)["offset"] = ~uint64_t{0} - 63; },
       "outside the data section"},
      {"offset in the header", [&](json& m) { t(m, 1)["offset"] = 64; },
       "outside the data section"},
      {"misaligned offset",
       [&](json& m) { t(m, 1)["offset"] = t(m, 1)["offset"].get<uint64_t>() + 4; },
       "not 64-byte aligned"},
      {"overlap", [&](json& m) { t(m, 2)["offset"] = t(m, 1)["offset"]; }, "overlap"},
      {"overlaps the tokenizer", [&](json& m) { t(m, 0)["offset"] = 128 + 64; }, "overlap"},
      {"wrong byte size", [&](json& m) { t(m, 1)["bytes"] = 128; }, "takes 64"},
      {"negative offset", [&](json& m) { t(m, 1)["offset"] = -64; }, "non-negative integer"},
      {"string size", [&](json& m) { t(m, 1)["bytes"] = "64"; }, "non-negative integer"},
      {"unknown format", [&](json& m) { t(m, 1)["format"] = "q3"; }, "\"q3\" is not"},
      {"3-D shape",
       [&](json& m) {
         t(m, 1)["shape"] = {1, 3, 5};
       },
       "1 or 2 positive"},
      {"zero dim",
       [&](json& m) {
         t(m, 1)["shape"] = {0, 5};
       },
       "1 or 2 positive"},
      {"huge dim",
       [&](json& m) {
         t(m, 1)["shape"] = {uint64_t{1} << 41, 5};
       },
       "1 or 2 positive"},
      {"huge product",
       [&](json& m) {
         t(m, 1)["shape"] = {uint64_t{1} << 40, uint64_t{1} << 40};
       },
       "overflows"},
      {"q4 group", [&](json& m) { t(m, 4)["group_size"] = 48; }, "got 48"},
      {"int8 group", [&](json& m) { t(m, 3)["group_size"] = 64; }, "has group size 32"},
      {"perm on f32", [&](json& m) { t(m, 1)["has_perm"] = true; }, "only supported for q4"},
      {"sfp8 scale", [&](json& m) { t(m, 7)["tensor_scale"] = -1.0; }, "positive finite"},
      {"scale not a float", [&](json& m) { t(m, 7)["tensor_scale"] = 1e300; }, "positive finite"},
      {"bad checksum text", [&](json& m) { t(m, 1)["xxh64"] = "xyz"; }, "16 hex digits"},
      {"duplicate", [&](json& m) { t(m, 2)["name"] = "w.f32"; }, "appears twice"},
      {"empty name", [&](json& m) { t(m, 2)["name"] = ""; }, "empty name"},
      {"missing key", [&](json& m) { t(m, 2).erase("offset"); }, "missing \"offset\""},
      {"tensor not object", [&](json& m) { m["tensors"][0] = 5; }, "must be a JSON object"},
      {"tensors not array", [&](json& m) { m["tensors"] = json::object(); }, "must be an array"},
      {"config not string", [&](json& m) { m["config"] = json::object(); }, "must be a string"},
      {"recipe not object", [&](json& m) { m["quantization"] = 3; }, "must be a JSON object"},
      {"tokenizer outside", [&](json& m) { m["tokenizer"]["bytes"] = data_end; },
       "tokenizer bytes"},
  };
  for (const Case& k : cases) {
    json m = meta;
    k.edit(m);
    SCOPED_TRACE(k.what);
    ExpectError([&] { Parse(WithMetadata(good_, m)); }, k.error);
  }
  std::vector<uint8_t> b = good_;
  const std::string junk = "{\"tensors\": [";
  const uint64_t off = Get64(b, kHdrMetaOffset);
  std::memcpy(b.data() + off, junk.data(), junk.size());
  Put64(b, kHdrMetaBytes, junk.size());
  Put64(b, kHdrMetaSum, Xxh64(junk.data(), junk.size()));
  Reseal(b);
  ExpectError([&] { Parse(b); }, "metadata is not valid JSON");
}

TEST_F(QlmFileErrors, BadPermutation) {
  const QlmContents c = Parse(good_);
  const QlmTensorEntry& t = c.tensors[6];
  ASSERT_TRUE(t.view.desc.has_perm);
  std::vector<uint8_t> b = good_;
  const size_t perm_at = t.offset + t.view.desc.perm_offset;
  Put32(b, perm_at + 4, 0);  // entry 1 repeats entry 0's value 0
  ExpectError([&] { Parse(b); }, "permutation holds 0 twice");
  Put32(b, perm_at + 4, 130);
  ExpectError([&] { Parse(b); }, "entry 1 = 130 is outside 0..129");
}

TEST_F(QlmFileErrors, MutatedMetadataNeverCrashes) {
  // Random byte edits of the metadata (checksums fixed up): each either
  // parses or throws qlm::Error; under ASan this also checks every read.
  const uint64_t off = Get64(good_, kHdrMetaOffset), n = Get64(good_, kHdrMetaBytes);
  std::mt19937 rng(123);
  const char alphabet[] = "0123456789-e.,:[]{}\"tnfa ";
  int parsed = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    std::vector<uint8_t> b = good_;
    const int edits = 1 + static_cast<int>(rng() % 3);
    for (int e = 0; e < edits; ++e) {
      b[off + rng() % n] = static_cast<uint8_t>(alphabet[rng() % (sizeof(alphabet) - 1)]);
    }
    Put64(b, kHdrMetaSum, Xxh64(b.data() + off, n));
    Reseal(b);
    try {
      Parse(b);
      ++parsed;
    } catch (const Error&) {
    }
  }
  EXPECT_LT(parsed, 3000);
}

}  // namespace
}  // namespace qlm
