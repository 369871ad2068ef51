// Regression tests for the bugs fuzzing and the malformed-file corpus found
// in the loaders (docs/robustness.md lists them), and for the guard against
// files that shrink while mapped.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "base/error.h"
#include "loaders/generation_config.h"
#include "loaders/mapped_file.h"
#include "loaders/model_config.h"
#include "loaders/safetensors.h"
#include "loaders/sentencepiece_check.h"
#include "loaders/weight_store.h"
#include "tests/loaders/shared_data.h"

namespace qlm {
namespace {

namespace fs = std::filesystem;

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
  return (fs::temp_directory_path() / ("qlm_regression_" + std::to_string(::getpid()) + "_" + name))
      .string();
}

// ---- StoredTensor::numel: a zero dimension next to huge ones.
// ParseSafetensors accepts [2^62, 3, 0] (0 elements, 0 bytes: its product
// check is on uint64, where 2^62·3 fits); numel() multiplied in int64, where
// it does not (signed overflow, caught by UBSan in fuzz_safetensors).

TEST(Regression, NumelOfZeroSizeTensorWithHugeDimsIsZero) {
  const std::string header =
      R"({"t":{"dtype":"F32","shape":[4611686018427387904,3,0],"data_offsets":[0,0]}})";
  std::string file(8, '\0');
  const uint64_t n = header.size();
  std::memcpy(file.data(), &n, 8);
  file += header;
  const SafetensorsHeader h =
      ParseSafetensors(reinterpret_cast<const uint8_t*>(file.data()), file.size(), "t");
  ASSERT_EQ(h.tensors.size(), 1u);
  StoredTensor t;
  t.shape = h.tensors[0].shape;
  EXPECT_EQ(t.numel(), 0);
  t.shape = {0, int64_t{1} << 62, int64_t{1} << 62};
  EXPECT_EQ(t.numel(), 0);
  t.shape = {3, 5, 7};
  EXPECT_EQ(t.numel(), 105);
}

// ---- Numbers outside float range (double -> float conversion is UB).

std::string LlamaConfig(const std::string& extra) {
  return R"({"model_type": "llama", "vocab_size": 32, "hidden_size": 8, "intermediate_size": 16,
             "num_hidden_layers": 1, "num_attention_heads": 2)" +
         extra + "}";
}

TEST(Regression, ConfigFloatsOutOfFloatRangeAreErrors) {
  ExpectError([] { ParseHfConfig(LlamaConfig(R"(, "rms_norm_eps": 1e300)")); },
              "\"rms_norm_eps\" is out of range for a 32-bit float");
  ExpectError([] { ParseHfConfig(LlamaConfig(R"(, "rope_theta": 1e300)")); },
              "\"rope_theta\" is out of range");
  ExpectError([] { ParseHfConfig(LlamaConfig(R"(, "rope_theta": 1e-300)")); },
              "\"rope_theta\" must be positive");
  ExpectError(
      [] {
        ParseHfConfig(LlamaConfig(R"(, "rope_scaling": {"rope_type": "linear", "factor": 1e300})"));
      },
      "\"factor\" is out of range");
  ExpectError(
      [] {
        ParseHfConfig(
            LlamaConfig(R"(, "rope_scaling": {"rope_type": "linear", "factor": 1e-300})"));
      },
      "\"factor\" must be positive");
  ExpectError([] { ParseHfConfig(LlamaConfig(R"(, "rope_parameters": {"rope_theta": 1e39})")); },
              "\"rope_theta\" is out of range");
  const std::string gemma2 =
      R"({"model_type": "gemma2", "vocab_size": 32, "hidden_size": 8, "intermediate_size": 16,
          "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 4)";
  ExpectError([&] { ParseHfConfig(gemma2 + R"(, "query_pre_attn_scalar": 1e-300})"); },
              "\"query_pre_attn_scalar\" is out of range");
  ExpectError([&] { ParseHfConfig(gemma2 + R"(, "query_pre_attn_scalar": 1e300})"); },
              "\"query_pre_attn_scalar\" is too large");
  ExpectError([&] { ParseHfConfig(gemma2 + R"(, "final_logit_softcapping": 1e300})"); },
              "\"final_logit_softcapping\" is out of range");
  ExpectError([&] { ParseHfConfig(gemma2 + R"(, "attn_logit_softcapping": 1e-300})"); },
              "\"attn_logit_softcapping\" must be positive");
  ExpectError([] { ParseGenerationConfig(R"({"temperature": 1e300})"); },
              "\"temperature\" is out of range");
  ExpectError([] { ParseGenerationConfig(R"({"top_p": -1e300})"); }, "\"top_p\" is out of range");
  // In range: still accepted, as before.
  EXPECT_FLOAT_EQ(ParseHfConfig(LlamaConfig(R"(, "rms_norm_eps": 3e38)")).rms_norm_eps, 3e38f);
  EXPECT_FLOAT_EQ(*ParseGenerationConfig(R"({"temperature": 0.7})").temperature, 0.7f);
}

// ---- A layer count that only a config claims: bounded before allocating
// per-layer state (2^31 - 1 layers made the loader allocate gigabytes and
// die with std::bad_alloc; tests/data/bad/hf/cfg_huge_layers).

TEST(Regression, ImplausibleLayerCountIsAnError) {
  ExpectError(
      [] {
        ParseHfConfig(
            R"({"model_type": "llama", "vocab_size": 32, "hidden_size": 8, "intermediate_size": 16,
                "num_hidden_layers": 2147483647, "num_attention_heads": 2})");
      },
      "\"num_hidden_layers\" (2147483647) is more than qlm supports (65536)");
  EXPECT_EQ(ParseHfConfig(R"({"model_type": "llama", "vocab_size": 32, "hidden_size": 8,
                              "intermediate_size": 16, "num_hidden_layers": 65536,
                              "num_attention_heads": 2})")
                .layer_is_sliding.size(),
            65536u);
}

// ---- SentencePiece's precompiled_charsmap (libsentencepiece walks it
// unchecked: a crafted one crashed `qlm logits` with SIGSEGV at load, via the
// model's self-test samples; tests/data/bad/hf/tok_corrupt_normalizer_trie).

// A charsmap blob: [u32 trie bytes][units][strings].
std::string CharsMap(const std::vector<uint32_t>& units, const std::string& strings) {
  std::string b(4, '\0');
  const uint32_t n = static_cast<uint32_t>(units.size() * 4);
  std::memcpy(b.data(), &n, 4);
  b.append(reinterpret_cast<const char*>(units.data()), units.size() * 4);
  return b + strings;
}

// A unit moving from `at` to `next` on byte `label` (offset = at ^ next).
uint32_t Edge(uint32_t at, uint32_t next, uint32_t label, bool leaf) {
  const uint32_t offset = at ^ next;
  EXPECT_LT(offset, 1u << 21);
  return offset << 10 | (leaf ? 1u << 8 : 0u) | label;
}

// Units for a chain root(256) -a-> 512 -a-> 768 ... of `steps` edges, each
// a leaf with replacement string 0, inside (steps + 2) blocks of 256.
std::vector<uint32_t> Chain(uint32_t steps) {
  std::vector<uint32_t> u(256 * (steps + 2), 0);
  // Unused units must not match byte 0 with offset 0 (a self-loop): give
  // them a label that never matches their position.
  for (uint32_t i = 0; i < u.size(); ++i) u[i] = 0x80000000u;
  u[0] = 256u << 10;  // root: offset 256
  for (uint32_t s = 1; s <= steps; ++s) {
    const uint32_t state = 256 * s, at = state ^ 'a';
    u[at] = Edge(at, state + 256, 'a', true);
    u[state + 256] = 0x80000000u;  // the leaf's value: string 0
  }
  return u;
}

TEST(Regression, CharsMapValidation) {
  const std::string strings("x\0", 2);
  EXPECT_NO_THROW(CheckPrecompiledCharsMap("", "m"));
  EXPECT_NO_THROW(CheckPrecompiledCharsMap(CharsMap(Chain(3), strings), "m"));
  EXPECT_NO_THROW(CheckPrecompiledCharsMap(CharsMap(Chain(32), strings), "m"));
  ExpectError([&] { CheckPrecompiledCharsMap(CharsMap(Chain(33), strings), "m"); },
              "more than 32 rules");
  ExpectError([] { CheckPrecompiledCharsMap("\x01\x00", "m"); }, "too short");
  // Trie size 2 bytes past the blob: SentencePiece's own check (size <
  // blob size, before dropping the 4-byte prefix) lets 1..3 through.
  std::string past = CharsMap(Chain(1), strings);
  const uint32_t too_big = static_cast<uint32_t>(past.size() - 2);
  std::memcpy(past.data(), &too_big, 4);
  ExpectError([&] { CheckPrecompiledCharsMap(past, "m"); }, "runs past");
  // Garbage units: states outside the array.
  std::vector<uint32_t> garbage(8, 0xFFFFFFFFu);
  garbage[0] = 0x00FFFF00u;
  ExpectError([&] { CheckPrecompiledCharsMap(CharsMap(garbage, strings), "m"); }, "outside");
  // A cycle through a leaf: unbounded matches for "aaaa...".
  std::vector<uint32_t> cycle = Chain(1);
  cycle[256 ^ 'a'] = Edge(256 ^ 'a', 256, 'a', true);
  ExpectError([&] { CheckPrecompiledCharsMap(CharsMap(cycle, strings), "m"); }, "cycle");
  // A leaf whose replacement lies outside the string table.
  std::vector<uint32_t> far = Chain(1);
  far[512] = 0x80000000u | 100;
  ExpectError([&] { CheckPrecompiledCharsMap(CharsMap(far, strings), "m"); }, "string table");
  ExpectError([&] { CheckPrecompiledCharsMap(CharsMap(Chain(1), "xy"), "m"); }, "terminated");
}

TEST(Regression, SentencePieceProtoWalk) {
  // normalizer_spec (field 3) { precompiled_charsmap (field 2) } with a bad blob.
  const std::string bad_blob = "\x10\x00\x00\x00" + std::string(20, '\xff');
  const std::string spec = std::string("\x12") + static_cast<char>(bad_blob.size()) + bad_blob;
  const std::string proto = std::string("\x1a") + static_cast<char>(spec.size()) + spec;
  ExpectError([&] { CheckSentencePieceProto(proto, "t.model"); },
              "t.model is not a valid SentencePiece model: normalizer_spec.precompiled_charsmap");
  // The same in denormalizer_spec (field 5).
  ExpectError(
      [&] {
        CheckSentencePieceProto(std::string("\x2a") + static_cast<char>(spec.size()) + spec, "t");
      },
      "denormalizer_spec.precompiled_charsmap");
  ExpectError([] { CheckSentencePieceProto("\x0a\xff\xff\xff\xff\x0f", "t"); },
              "malformed protobuf");
  ExpectError([] { CheckSentencePieceProto(std::string("\x0c", 1), "t"); }, "malformed protobuf");
  EXPECT_NO_THROW(CheckSentencePieceProto("", "t"));
}

TEST(Regression, RealTokenizersPassTheCharsMapCheck) {
  for (const char* name : {"tokenizers/albert-unigram-30k.model", "tokenizers/llama2.model",
                           "tokenizers/gemma3.model", "models/austen-gemma3/tokenizer.model"}) {
    QLM_SHARED_PATH(path, name);
    const std::string proto = testing::ReadAll(path);
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_NO_THROW(CheckSentencePieceProto(proto, path)) << path;
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_LT(ms, 2000.0) << path;  // a load-time check: milliseconds, not seconds
  }
}

// ---- Files that shrink while mapped: one error line and exit 1, not SIGBUS.

TEST(RegressionDeathTest, FileTruncatedWhileMappedExitsWithOneErrorLine) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  const std::string path = TempPath("shrinks.bin");
  {
    std::ofstream out(path, std::ios::binary);
    const std::string page(4096, 'x');
    for (int i = 0; i < 4; ++i) out << page;
  }
  EXPECT_EXIT(
      {
        // More mappings come and go than the registry has slots (1024):
        // unmapping must free them, or this last one would not be guarded.
        for (int i = 0; i < 2000; ++i) {
          MappedFile g = MappedFile::Open(path);
          MappedFile h = std::move(g);
          if (h.size() != 4 * 4096) std::abort();
        }
        const MappedFile f = MappedFile::Open(path);
        if (::truncate(path.c_str(), 100) != 0) std::abort();
        volatile uint8_t sink = f.data()[3 * 4096 + 7];  // a page now past the end
        (void)sink;
        std::_Exit(0);  // not reached
      },
      ::testing::ExitedWithCode(1), "^error: .*shrinks\\.bin changed while it was mapped");
  fs::remove(path);
}

// A SIGBUS that is not in a mapped model file must not be reported as one:
// it goes on to the previous handler (a sanitizer's) or kills the process.
TEST(Regression, SigbusOutsideMappingsIsNotSwallowed) {
  const std::string path = TempPath("unrelated.bin");
  {
    std::ofstream out(path, std::ios::binary);
    out << "abc";
  }
  int err_pipe[2];
  ASSERT_EQ(::pipe(err_pipe), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::dup2(err_pipe[1], 2);
    const MappedFile f = MappedFile::Open(path);  // installs the handler
    (void)f;
    ::raise(SIGBUS);
    ::_exit(0);  // a swallowed signal
  }
  ::close(err_pipe[1]);
  std::string err;
  char buf[4096];
  for (ssize_t n; (n = ::read(err_pipe[0], buf, sizeof(buf))) > 0;) err.append(buf, n);
  ::close(err_pipe[0]);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  // Killed by SIGBUS by default; under ASan its handler reports and aborts.
  EXPECT_FALSE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "the SIGBUS was swallowed";
  EXPECT_EQ(err.find("changed while it was mapped"), std::string::npos) << err;
  fs::remove(path);
}

}  // namespace
}  // namespace qlm
