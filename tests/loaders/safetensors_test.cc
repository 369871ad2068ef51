// The safetensors parser: real files from ../shared, and malformed buffers
// that must each fail with a qlm::Error that says what is wrong.
#include "loaders/safetensors.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "base/error.h"
#include "loaders/model_config.h"
#include "loaders/weight_store.h"
#include "tests/loaders/shared_data.h"

namespace qlm {
namespace {

using nlohmann::json;

// A safetensors file image: 8-byte length, header text, `data` bytes.
std::string MakeImage(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xFF);
  return out + header + data;
}

std::string MakeImage(const json& header, size_t data_bytes) {
  return MakeImage(header.dump(), std::string(data_bytes, '\x5A'));
}

SafetensorsHeader Parse(const std::string& image) {
  return ParseSafetensors(reinterpret_cast<const uint8_t*>(image.data()), image.size(), "t.st");
}

// Parsing must throw a qlm::Error whose message contains every `needle`.
void ExpectError(const std::string& image, const std::vector<std::string>& needles) {
  try {
    Parse(image);
    ADD_FAILURE() << "no error; expected one mentioning " << ::testing::PrintToString(needles);
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("t.st"), std::string::npos) << "message does not name the file: " << msg;
    for (const std::string& n : needles) {
      EXPECT_NE(msg.find(n), std::string::npos) << "'" << n << "' not in: " << msg;
    }
  }
}

json Entry(const std::string& dtype, std::vector<int64_t> shape, uint64_t begin, uint64_t end) {
  return json{{"dtype", dtype}, {"shape", shape}, {"data_offsets", {begin, end}}};
}

// Two F32 tensors and one BF16, 8 + 16 + 6 = 30 data bytes.
json ValidHeader() {
  json h;
  h["__metadata__"] = {{"format", "pt"}};
  h["a"] = Entry("F32", {2}, 0, 8);
  h["b"] = Entry("F32", {2, 2}, 8, 24);
  h["c"] = Entry("BF16", {3}, 24, 30);
  return h;
}

TEST(Safetensors, ParsesValidImage) {
  const SafetensorsHeader h = Parse(MakeImage(ValidHeader(), 30));
  ASSERT_EQ(h.tensors.size(), 3u);
  EXPECT_EQ(h.tensors[0].name, "a");
  EXPECT_EQ(h.tensors[1].name, "b");
  EXPECT_EQ(h.tensors[1].shape, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(h.tensors[1].begin, 8u);
  EXPECT_EQ(h.tensors[1].end, 24u);
  EXPECT_EQ(h.tensors[2].dtype, DType::kBF16);
  EXPECT_EQ(h.data_size, 30u);
  EXPECT_EQ(h.data_offset, 8 + ValidHeader().dump().size());
  EXPECT_EQ(h.metadata.at("format"), "pt");
}

TEST(Safetensors, AcceptsEdgeCasesTheFormatAllows) {
  // Empty header, no data.
  EXPECT_TRUE(Parse(MakeImage("{}", "")).tensors.empty());
  // Header padded with trailing spaces; a scalar (shape []); empty tensors
  // (a zero dimension) sharing an offset; I32 and F16; entries out of order.
  json h;
  h["z2"] = Entry("F16", {0, 7}, 4, 4);
  h["s"] = Entry("I32", {}, 0, 4);
  h["z1"] = Entry("F32", {3, 0}, 4, 4);
  h["h"] = Entry("F16", {1, 3}, 4, 10);
  const SafetensorsHeader p = Parse(MakeImage(h.dump() + "       ", std::string(10, '\0')));
  ASSERT_EQ(p.tensors.size(), 4u);
  EXPECT_EQ(p.tensors[0].name, "s");
  EXPECT_TRUE(p.tensors[0].shape.empty());
  EXPECT_EQ(p.tensors[0].dtype, DType::kI32);
  EXPECT_EQ(p.tensors[3].name, "h");
  EXPECT_EQ(p.tensors[3].dtype, DType::kF16);
}

TEST(Safetensors, RejectsTruncationAtEveryByte) {
  // Every proper prefix of a valid file is an error, never a crash: this
  // covers each structural boundary (length field, header, each tensor).
  const std::string image = MakeImage(ValidHeader(), 30);
  for (size_t len = 0; len < image.size(); ++len) {
    SCOPED_TRACE("truncated to " + std::to_string(len) + " bytes");
    EXPECT_THROW(ParseSafetensors(reinterpret_cast<const uint8_t*>(image.data()), len, "t.st"),
                 Error);
  }
  // One extra byte is an error too (it belongs to no tensor).
  ExpectError(image + "x", {"belong to no tensor"});
}

TEST(Safetensors, RejectsBadHeaderLength) {
  ExpectError("", {"too short"});
  ExpectError(std::string(7, '\0'), {"too short"});
  const std::string body = ValidHeader().dump() + std::string(30, '\0');
  for (uint64_t n :
       {uint64_t{1} << 63, ~uint64_t{0}, uint64_t{body.size() + 1}, uint64_t{1} << 32}) {
    std::string image(8, '\0');
    for (int i = 0; i < 8; ++i) image[i] = static_cast<char>((n >> (8 * i)) & 0xFF);
    ExpectError(image + body, {"header length", "larger than"});
  }
  // Header length 0 or 1: no room for a JSON object.
  ExpectError(MakeImage("", ""), {"JSON object"});
  ExpectError(MakeImage("{", ""), {"JSON object"});
}

TEST(Safetensors, RejectsInvalidJson) {
  ExpectError(MakeImage("{\"a\": ", ""), {"not valid JSON"});
  ExpectError(MakeImage("{\"a\": 1,}", ""), {"not valid JSON"});
  ExpectError(MakeImage(std::string("{\"\xff\xfe\": 1}"), ""), {"not valid JSON"});
  ExpectError(MakeImage("{} trailing", ""), {"not valid JSON"});
  ExpectError(MakeImage(" {}", ""), {"JSON object"});
  ExpectError(MakeImage("[1, 2]", ""), {"JSON object"});
  ExpectError(MakeImage("\"{}\"", ""), {"JSON object"});
}

TEST(Safetensors, RejectsWrongJsonTypes) {
  auto with = [](const std::string& key, const json& value) {
    json h = ValidHeader();
    h["b"][key] = value;
    return MakeImage(h, 30);
  };
  ExpectError(with("dtype", 5), {"'b'", "dtype", "string"});
  ExpectError(with("dtype", nullptr), {"'b'", "dtype", "string"});
  ExpectError(with("shape", "2,2"), {"'b'", "shape", "array"});
  ExpectError(with("shape", json{2.5, 2}), {"'b'", "shape dimension", "integer"});
  ExpectError(with("shape", json{"2", 2}), {"'b'", "shape dimension", "integer"});
  ExpectError(with("shape", json{true, 2}), {"'b'", "shape dimension", "integer"});
  ExpectError(with("shape", json{json::array({2}), 2}), {"'b'", "shape dimension"});
  ExpectError(with("data_offsets", json{8}), {"'b'", "two integers"});
  ExpectError(with("data_offsets", json{8, 24, 24}), {"'b'", "two integers"});
  ExpectError(with("data_offsets", json{"8", 24}), {"'b'", "begin", "integer"});
  ExpectError(with("data_offsets", json{8, 24.0}), {"'b'", "end", "integer"});
  ExpectError(with("data_offsets", json::object()), {"'b'", "two integers"});

  json h = ValidHeader();
  h["b"] = json::array({1, 2});
  ExpectError(MakeImage(h, 30), {"'b'", "JSON object"});
  h["b"] = 7;
  ExpectError(MakeImage(h, 30), {"'b'", "JSON object"});
  for (const char* key : {"dtype", "shape", "data_offsets"}) {
    h = ValidHeader();
    h["b"].erase(key);
    ExpectError(MakeImage(h, 30), {"'b'", std::string("missing \"") + key + "\""});
  }
  h = ValidHeader();
  h["__metadata__"] = json::array();
  ExpectError(MakeImage(h, 30), {"__metadata__"});
  h["__metadata__"] = {{"format", 1}};
  ExpectError(MakeImage(h, 30), {"__metadata__", "format", "string"});
}

TEST(Safetensors, RejectsUnsupportedDtypes) {
  for (const char* dtype : {"F64", "I64", "U8", "I8", "BOOL", "F8_E4M3", "f32", ""}) {
    json h = ValidHeader();
    h["a"]["dtype"] = dtype;
    ExpectError(MakeImage(h, 30), {"'a'", std::string("\"") + dtype + "\"", "not supported"});
  }
}

TEST(Safetensors, RejectsNegativeAndOverflowingShapes) {
  auto with_shape = [](const json& shape) {
    json h = ValidHeader();
    h["b"]["shape"] = shape;
    return MakeImage(h, 30);
  };
  ExpectError(with_shape(json{-4}), {"'b'", "negative"});
  ExpectError(with_shape(json{2, -2}), {"'b'", "negative"});
  ExpectError(with_shape(json{int64_t{-1} << 62, -4}), {"'b'", "negative"});
  // Products that overflow 64 bits must not wrap around to the right size.
  ExpectError(with_shape(json{uint64_t{1} << 62, uint64_t{1} << 62}), {"'b'", "too large"});
  ExpectError(with_shape(json{uint64_t{1} << 32, uint64_t{1} << 32, 4}), {"'b'", "too large"});
  // 2^62 elements * 4 bytes wraps to 0 in 64 bits: still an error.
  ExpectError(with_shape(json{uint64_t{1} << 62}), {"'b'", "too large"});
  // (2^64 + 16) / 4 elements would "fit" 16 bytes after wrapping.
  ExpectError(with_shape(json{uint64_t{1} << 61, 8, 4}), {"'b'", "too large"});
  ExpectError(with_shape(json{~uint64_t{0}}), {"'b'", "too large"});
  ExpectError(with_shape(json{1e30}), {"'b'", "integer"});
}

TEST(Safetensors, RejectsOffsetsOutOfRangeOrInconsistent) {
  auto with_offsets = [](uint64_t begin, uint64_t end) {
    json h = ValidHeader();
    h["c"]["data_offsets"] = {begin, end};
    return MakeImage(h, 30);
  };
  ExpectError(with_offsets(24, 31), {"'c'", "past the data section"});
  ExpectError(with_offsets(24, ~uint64_t{0}), {"'c'", "past the data section"});
  ExpectError(with_offsets(30, 24), {"'c'", "end before they begin"});
  ExpectError(with_offsets(~uint64_t{0} - 2, 4), {"'c'", "end before they begin"});
  ExpectError(with_offsets(24, 28), {"'c'", "need 6 bytes", "span 4"});
  {  // Header claims more data than the file has.
    ExpectError(MakeImage(ValidHeader(), 29), {"'c'", "past the data section"});
  }
  {  // Shape/size mismatch.
    json h = ValidHeader();
    h["b"]["shape"] = {2, 3};
    ExpectError(MakeImage(h, 30), {"'b'", "need 24 bytes", "span 16"});
    h = ValidHeader();
    h["b"]["dtype"] = "BF16";
    ExpectError(MakeImage(h, 30), {"'b'", "BF16", "need 8 bytes"});
  }
}

TEST(Safetensors, RejectsOverlapsAndHoles) {
  {
    json h = ValidHeader();
    h["b"]["data_offsets"] = {4, 20};
    h["b"]["shape"] = {4};
    ExpectError(MakeImage(h, 30), {"overlap", "'a'", "'b'"});
  }
  {  // Two tensors on exactly the same bytes.
    json h = ValidHeader();
    h["d"] = Entry("F32", {2}, 0, 8);
    ExpectError(MakeImage(h, 30), {"overlap"});
  }
  {  // An empty tensor placed inside another tensor's bytes.
    json h = ValidHeader();
    h["e"] = Entry("F32", {0}, 12, 12);
    ExpectError(MakeImage(h, 30), {"'e'", "overlap", "'b'"});
  }
  {  // A gap between tensors.
    json h;
    h["a"] = Entry("F32", {1}, 0, 4);
    h["b"] = Entry("F32", {1}, 8, 12);
    ExpectError(MakeImage(h, 12), {"[4, 8)", "no tensor"});
  }
  {  // Data before the first tensor.
    json h;
    h["a"] = Entry("F32", {1}, 4, 8);
    ExpectError(MakeImage(h, 8), {"[0, 4)", "no tensor"});
  }
}

TEST(Safetensors, SurvivesHostileJson) {
  // Deep nesting must not exhaust the stack (nlohmann parses iteratively).
  const std::string deep = std::string(200000, '[') + std::string(200000, ']');
  ExpectError(MakeImage("{\"a\": " + deep + "}", ""), {"'a'", "JSON object"});
  ExpectError(MakeImage("{\"a\": {\"dtype\": \"F32\", \"shape\": " + deep + "}}", ""),
              {"'a'", "shape"});
  // A duplicated name hides one entry; the bytes it covered are then a hole.
  const std::string dup = R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},)"
                          R"( "a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})";
  EXPECT_THROW(Parse(MakeImage(dup, std::string(8, '\0'))), Error);
}

TEST(Safetensors, RandomCorruptionGivesParseOrQlmError) {
  // Flip, set and drop bytes of a valid image: the parser either accepts the
  // result or throws qlm::Error — never another exception, never a crash.
  const std::string image = MakeImage(ValidHeader(), 30);
  const std::string kChars = "{}[]\":,0123456789-.e \xff";
  std::mt19937 rng(12345);
  int accepted = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    std::string bad = image;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      const size_t at = rng() % bad.size();
      switch (rng() % 3) {
        case 0:
          bad[at] = static_cast<char>(bad[at] ^ (1 << (rng() % 8)));
          break;
        case 1:
          bad[at] = kChars[rng() % kChars.size()];
          break;
        default:
          bad.erase(at, 1);
          break;
      }
    }
    try {
      Parse(bad);
      ++accepted;
    } catch (const Error&) {
    }
  }
  EXPECT_LT(accepted, 3000);
}

TEST(Safetensors, ErrorsFromFilesNameTheFile) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("qlm_st_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "bad.safetensors").string();
  const std::string image = MakeImage(ValidHeader(), 30);
  {
    std::ofstream out(path, std::ios::binary);
    out.write(image.data(), static_cast<std::streamsize>(image.size() - 3));
  }
  try {
    WeightStore::OpenSafetensors(path);
    ADD_FAILURE() << "truncated file loaded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
  std::filesystem::remove_all(dir);
}

// ---- Files from ../shared ----

struct SharedModel {
  const char* dir;
  bool gptq;
};

// Checks a model's tensors against its config: Hugging Face names, shapes
// from the hyper-parameters, one dtype for weights.
void CheckModelTensors(const std::string& dir, bool gptq) {
  const ModelConfig c = ReadHfConfig(dir + "/config.json");
  const std::string path = dir + "/model.safetensors";
  MappedFile file = MappedFile::Open(path);
  const SafetensorsHeader h = ParseSafetensors(file.data(), file.size(), path);
  std::map<std::string, const SafetensorsEntry*> by_name;
  for (const SafetensorsEntry& e : h.tensors) by_name[e.name] = &e;

  const DType float_type = gptq ? DType::kF16 : DType::kBF16;
  auto expect = [&](const std::string& name, std::vector<int64_t> shape, DType dtype) {
    const auto it = by_name.find(name);
    if (it == by_name.end()) {
      ADD_FAILURE() << path << ": no tensor " << name;
      return;
    }
    EXPECT_EQ(it->second->shape, shape) << name;
    EXPECT_EQ(it->second->dtype, dtype) << name;
    by_name.erase(it);
  };
  const int64_t hidden = c.hidden_size, q = int64_t{c.num_heads} * c.head_dim,
                kv = int64_t{c.num_kv_heads} * c.head_dim, ffn = c.intermediate_size;
  auto linear = [&](const std::string& name, int64_t out, int64_t in) {
    if (!gptq) return expect(name + ".weight", {out, in}, float_type);
    const int64_t group = 128;
    expect(name + ".qweight", {in / 8, out}, DType::kI32);
    expect(name + ".qzeros", {in / group, out / 8}, DType::kI32);
    expect(name + ".scales", {in / group, out}, DType::kF16);
    expect(name + ".g_idx", {in}, DType::kI32);
  };
  expect("model.embed_tokens.weight", {c.vocab_size, hidden}, float_type);
  expect("model.norm.weight", {hidden}, float_type);
  if (!c.tie_word_embeddings) expect("lm_head.weight", {c.vocab_size, hidden}, float_type);
  for (int l = 0; l < c.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    linear(p + "self_attn.q_proj", q, hidden);
    linear(p + "self_attn.k_proj", kv, hidden);
    linear(p + "self_attn.v_proj", kv, hidden);
    linear(p + "self_attn.o_proj", hidden, q);
    linear(p + "mlp.gate_proj", ffn, hidden);
    linear(p + "mlp.up_proj", ffn, hidden);
    linear(p + "mlp.down_proj", hidden, ffn);
    expect(p + "input_layernorm.weight", {hidden}, float_type);
    expect(p + "post_attention_layernorm.weight", {hidden}, float_type);
    if (c.post_norms) {
      expect(p + "pre_feedforward_layernorm.weight", {hidden}, float_type);
      expect(p + "post_feedforward_layernorm.weight", {hidden}, float_type);
    }
    if (c.qk_norm) {
      expect(p + "self_attn.q_norm.weight", {c.head_dim}, float_type);
      expect(p + "self_attn.k_norm.weight", {c.head_dim}, float_type);
    }
  }
  for (const auto& [name, e] : by_name) ADD_FAILURE() << path << ": unexpected tensor " << name;
}

TEST(SafetensorsShared, AustenGemma3) {
  QLM_SHARED_PATH(dir, "models/austen-gemma3");
  CheckModelTensors(dir, false);
}

TEST(SafetensorsShared, TinyLlama) {
  QLM_SHARED_PATH(dir, "fixtures/tiny-llama");
  CheckModelTensors(dir, false);
}

TEST(SafetensorsShared, TinyGemma) {
  QLM_SHARED_PATH(dir, "fixtures/tiny-gemma");
  CheckModelTensors(dir, false);
}

TEST(SafetensorsShared, TinyGemma2) {
  QLM_SHARED_PATH(dir, "fixtures/tiny-gemma2");
  CheckModelTensors(dir, false);
}

TEST(SafetensorsShared, GptqCheckpointWithI32Tensors) {
  QLM_SHARED_PATH(dir, "gptq/austen-gemma3-gptq-g128");
  CheckModelTensors(dir, true);
}

TEST(SafetensorsShared, TruncatedRealFileFailsAtEveryBoundary) {
  QLM_SHARED_PATH(path, "fixtures/tiny-gemma2/model.safetensors");
  MappedFile file = MappedFile::Open(path);
  const SafetensorsHeader h = ParseSafetensors(file.data(), file.size(), path);
  std::vector<size_t> cuts = {0, 1, 7, 8, 9, h.data_offset / 2, h.data_offset - 1, h.data_offset};
  for (const SafetensorsEntry& e : h.tensors) {
    cuts.push_back(h.data_offset + e.begin);
    if (e.end > e.begin) cuts.push_back(h.data_offset + e.end - 1);
  }
  for (size_t cut : cuts) {
    if (cut >= file.size()) continue;
    SCOPED_TRACE("cut at " + std::to_string(cut));
    EXPECT_THROW(ParseSafetensors(file.data(), cut, path), Error);
  }
}

}  // namespace
}  // namespace qlm
