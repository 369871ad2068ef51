// The SentencePiece tokenizer against SentencePiece's own outputs
// (../shared/tokenizers/cases.json, golden prompt ids, the encoder itself on
// Austen text), and the streaming detokenizer against whole-sequence Decode.
#include "core/tokenizer.h"

#include <gtest/gtest.h>
#include <sentencepiece_processor.h>

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "base/error.h"
#include "tests/loaders/shared_data.h"

namespace qlm {
namespace {

using nlohmann::json;
using qlm::testing::ReadAll;

// Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF,
// no truncated sequence.
bool IsValidUtf8(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto b = static_cast<uint8_t>(s[i]);
    int n;
    uint32_t cp;
    if (b < 0x80) {
      ++i;
      continue;
    } else if ((b & 0xE0) == 0xC0) {
      n = 2;
      cp = b & 0x1F;
    } else if ((b & 0xF0) == 0xE0) {
      n = 3;
      cp = b & 0x0F;
    } else if ((b & 0xF8) == 0xF0) {
      n = 4;
      cp = b & 0x07;
    } else {
      return false;
    }
    if (i + n > s.size()) return false;
    for (int k = 1; k < n; ++k) {
      const auto c = static_cast<uint8_t>(s[i + k]);
      if ((c & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (c & 0x3F);
    }
    static const uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += n;
  }
  return true;
}

// Streams `ids` one at a time; checks every chunk is valid UTF-8 and that the
// chunks add up to Decode(ids). Returns the chunks.
std::vector<std::string> StreamAndCheck(const Tokenizer& tok, const std::vector<int>& ids) {
  StreamingDetokenizer stream(tok);
  std::vector<std::string> chunks;
  std::string joined;
  for (int id : ids) {
    chunks.push_back(stream.Push(id));
    EXPECT_TRUE(IsValidUtf8(chunks.back()))
        << "chunk " << chunks.size() - 1 << " (id " << id << ") is not valid UTF-8";
    joined += chunks.back();
  }
  chunks.push_back(stream.Flush());
  EXPECT_TRUE(IsValidUtf8(chunks.back())) << "flushed text is not valid UTF-8";
  joined += chunks.back();
  const std::string whole = tok.Decode(ids);
  EXPECT_EQ(joined, whole) << "streamed text differs from Decode for "
                           << ::testing::PrintToString(ids);
  return chunks;
}

// ---- Reference cases from SentencePiece itself ----

TEST(TokenizerShared, MatchesSentencePieceCases) {
  QLM_SHARED_PATH(cases_path, "tokenizers/cases.json");
  const json cases = json::parse(ReadAll(cases_path));
  ASSERT_GE(cases.size(), 3u);
  for (const auto& [name, spec] : cases.items()) {
    SCOPED_TRACE(name);
    QLM_SHARED_PATH(model, "tokenizers/" + name + ".model");
    const Tokenizer tok = Tokenizer::FromFile(model);
    EXPECT_EQ(tok.vocab_size(), spec.at("vocab_size").get<int>());
    EXPECT_EQ(tok.bos_id(), spec.at("bos_id").get<int>());
    EXPECT_EQ(tok.eos_id(), spec.at("eos_id").get<int>());
    EXPECT_EQ(tok.unk_id(), spec.at("unk_id").get<int>());
    EXPECT_EQ(tok.pad_id(), spec.at("pad_id").get<int>());
    ASSERT_FALSE(spec.at("cases").empty());
    for (const json& c : spec.at("cases")) {
      const std::string text = c.at("text").get<std::string>();
      SCOPED_TRACE(text);
      const std::vector<int> ids = tok.Encode(text, false);
      EXPECT_EQ(ids, c.at("ids").get<std::vector<int>>());
      EXPECT_EQ(tok.Decode(c.at("ids").get<std::vector<int>>()),
                c.at("decoded").get<std::string>());
      if (tok.bos_id() >= 0) {
        const std::vector<int> with_bos = tok.Encode(text, true);
        ASSERT_EQ(with_bos.size(), ids.size() + 1);
        EXPECT_EQ(with_bos[0], tok.bos_id());
      } else {
        EXPECT_THROW(tok.Encode(text, true), Error);
      }
      StreamAndCheck(tok, ids);
    }
  }
}

TEST(TokenizerShared, GoldenPromptIdsAreBosPlusSentencePiece) {
  int checked = 0;
  for (const char* rel : {"models/austen-gemma3", "fixtures/tiny-llama", "fixtures/tiny-gemma",
                          "fixtures/tiny-gemma2", "gptq/austen-gemma3-gptq-g128"}) {
    SCOPED_TRACE(rel);
    QLM_SHARED_PATH(dir, rel);
    QLM_SHARED_PATH(model, std::string(rel) + "/tokenizer.model");
    QLM_SHARED_PATH(golden, std::string(rel) + "/golden");
    const Tokenizer tok = Tokenizer::FromFile(model);
    EXPECT_EQ(tok.vocab_size(), 8000);
    EXPECT_EQ(tok.bos_id(), 2);
    EXPECT_EQ(tok.eos_id(), 1);
    EXPECT_EQ(tok.pad_id(), 0);
    EXPECT_EQ(tok.unk_id(), 3);
    EXPECT_EQ(tok.PieceToId("<start_of_turn>"), 4);
    EXPECT_EQ(tok.PieceToId("<end_of_turn>"), 5);
    int files = 0;
    for (const auto& entry : std::filesystem::directory_iterator(golden)) {
      if (entry.path().extension() != ".json") continue;
      const json g = json::parse(ReadAll(entry.path().string()));
      const std::string prompt = g.at("prompt").get<std::string>();
      EXPECT_EQ(tok.Encode(prompt, true), g.at("ids").get<std::vector<int>>())
          << entry.path() << ": " << prompt;
      ++files;
    }
    EXPECT_GT(files, 0) << "no golden/*.json in " << golden;
    checked += files;
  }
  EXPECT_GE(checked, 5);
}

TEST(TokenizerShared, AustenCorpusMatchesSentencePieceEncoder) {
  QLM_SHARED_PATH(model, "models/austen-gemma3/tokenizer.model");
  QLM_SHARED_PATH(corpus, "corpus/valid.txt");
  std::string text = ReadAll(corpus);
  ASSERT_GT(text.size(), 100000u);
  text.resize(100000);
  while (!text.empty() && (static_cast<uint8_t>(text.back()) & 0xC0) == 0x80) text.pop_back();
  if (!text.empty() && static_cast<uint8_t>(text.back()) >= 0xC0) text.pop_back();

  const Tokenizer tok = Tokenizer::FromFile(model);
  sentencepiece::SentencePieceProcessor sp;
  ASSERT_TRUE(sp.Load(model).ok());
  std::vector<int> reference;
  ASSERT_TRUE(sp.Encode(text, &reference).ok());

  const std::vector<int> ids = tok.Encode(text, false);
  EXPECT_EQ(ids, reference);
  EXPECT_GT(ids.size(), 10000u);
  // Identity normalization and byte fallback: decoding is lossless.
  EXPECT_EQ(tok.Decode(ids), text);
  // Line by line, with BOS, as prompts are encoded.
  size_t start = 0;
  int lines = 0;
  while (start < text.size() && lines < 200) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    const std::string line = text.substr(start, end - start);
    std::vector<int> ref;
    ASSERT_TRUE(sp.Encode(line, &ref).ok());
    ref.insert(ref.begin(), sp.bos_id());
    EXPECT_EQ(tok.Encode(line, true), ref) << line;
    start = end + 1;
    ++lines;
  }
  // The streamed text of the whole chunk is the text.
  std::string streamed;
  for (const std::string& chunk : StreamAndCheck(tok, ids)) streamed += chunk;
  EXPECT_EQ(streamed, text);
}

// ---- Loading ----

TEST(TokenizerShared, LoadsFromSerializedProto) {
  QLM_SHARED_PATH(model, "models/austen-gemma3/tokenizer.model");
  const std::string bytes = ReadAll(model);
  const Tokenizer a = Tokenizer::FromFile(model);
  const Tokenizer b = Tokenizer::FromSerializedProto(bytes);
  EXPECT_EQ(a.serialized_proto(), bytes);
  EXPECT_EQ(b.serialized_proto(), bytes);
  EXPECT_EQ(b.vocab_size(), a.vocab_size());
  const std::string text = "Emma Woodhouse, handsome, clever, and rich — “quoted”";
  EXPECT_EQ(b.Encode(text, true), a.Encode(text, true));
  // A moved tokenizer keeps working.
  Tokenizer c = Tokenizer::FromSerializedProto(bytes);
  Tokenizer d = std::move(c);
  EXPECT_EQ(d.Encode(text, false), a.Encode(text, false));
}

TEST(Tokenizer, LoadErrorsAreClear) {
  try {
    Tokenizer::FromFile("/nonexistent/dir/tokenizer.model");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/dir/tokenizer.model"), std::string::npos);
  }
  EXPECT_THROW(Tokenizer::FromSerializedProto(""), Error);
  EXPECT_THROW(Tokenizer::FromSerializedProto("this is not a protobuf"), Error);
  try {
    Tokenizer::FromSerializedProto(std::string("\x0a\x05hello\xff\xff", 9), "bad.model");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bad.model"), std::string::npos) << e.what();
  }
}

TEST(TokenizerShared, TruncatedProtoIsAnError) {
  QLM_SHARED_PATH(model, "models/austen-gemma3/tokenizer.model");
  const std::string bytes = ReadAll(model);
  for (size_t len : {size_t{1}, size_t{2}, size_t{16}, bytes.size() / 2, bytes.size() - 1}) {
    SCOPED_TRACE(len);
    EXPECT_THROW(Tokenizer::FromSerializedProto(bytes.substr(0, len)), Error);
  }
}

// ---- Pieces and ids ----

TEST(TokenizerShared, PiecesAndIds) {
  QLM_SHARED_PATH(model, "tokenizers/llama2.model");
  const Tokenizer tok = Tokenizer::FromFile(model);
  EXPECT_EQ(tok.IdToPiece(1), "<s>");
  EXPECT_EQ(tok.IdToPiece(2), "</s>");
  EXPECT_EQ(tok.IdToPiece(0), "<unk>");
  EXPECT_EQ(tok.PieceToId("<unk>"), 0);
  EXPECT_EQ(tok.PieceToId("<s>"), 1);
  EXPECT_EQ(tok.PieceToId("not-a-piece-at-all-xyz"), -1);
  EXPECT_EQ(tok.PieceToId(""), -1);
  EXPECT_TRUE(tok.IsControl(1));
  EXPECT_FALSE(tok.IsControl(739));
  // Byte-fallback pieces.
  const int e2 = tok.PieceToId("<0xE2>");
  ASSERT_GE(e2, 0);
  EXPECT_TRUE(tok.IsByte(e2));
  EXPECT_EQ(tok.IdToPiece(e2), "<0xE2>");
  for (int id = 0; id < tok.vocab_size(); id += 97) {
    EXPECT_EQ(tok.PieceToId(tok.IdToPiece(id)), id) << tok.IdToPiece(id);
  }
  for (int bad : {-1, tok.vocab_size(), 1 << 30}) {
    EXPECT_THROW(tok.IdToPiece(bad), Error);
    EXPECT_THROW(tok.Decode(std::vector<int>{5, bad}), Error);
    EXPECT_THROW(tok.IsByte(bad), Error);
    StreamingDetokenizer stream(tok);
    EXPECT_THROW(stream.Push(bad), Error);
  }
  EXPECT_EQ(tok.Decode(std::vector<int>{}), "");
  EXPECT_TRUE(tok.Encode("", false).empty());
}

// ---- Streaming ----

TEST(TokenizerShared, StreamsByteFallbackCharactersWhole) {
  QLM_SHARED_PATH(model, "models/austen-gemma3/tokenizer.model");
  const Tokenizer tok = Tokenizer::FromFile(model);
  const std::string text =
      "She said \xE2\x80\x9Cyes\xE2\x80\x9D \xE2\x80\x94 it\xE2\x80\x99s true: caf\xC3\xA9, "
      "\xF0\x9F\x98\x80\xF0\x9F\x9A\x80 \xE4\xB8\xAD\xE6\x96\x87 \xED\x95\x9C\xEA\xB5\xAD "
      "\xE2\x86\x92 \xE2\x89\xA4 \xE2\x88\x9E.";
  std::vector<int> ids = tok.Encode(text, true);
  int byte_pieces = 0;
  for (int id : ids) byte_pieces += tok.IsByte(id) ? 1 : 0;
  // The Austen vocabulary lacks emoji and CJK: they must come as bytes, or
  // this test would not exercise byte fallback.
  ASSERT_GE(byte_pieces, 12);
  ids.push_back(tok.eos_id());
  const std::vector<std::string> chunks = StreamAndCheck(tok, ids);
  std::string joined;
  for (const std::string& c : chunks) joined += c;
  EXPECT_EQ(joined, text);
  // 😀 arrives in one chunk, never split.
  bool whole = false;
  for (const std::string& c : chunks) whole |= c.find("\xF0\x9F\x98\x80") != std::string::npos;
  EXPECT_TRUE(whole);
  // The three byte pieces of ’ yield nothing until the last one.
  const std::vector<int> quote = {tok.PieceToId("<0xE2>"), tok.PieceToId("<0x80>"),
                                  tok.PieceToId("<0x99>")};
  const int a = tok.PieceToId("a");
  ASSERT_GE(a, 0);
  StreamingDetokenizer stream(tok);
  EXPECT_EQ(stream.Push(a), "a");
  EXPECT_EQ(stream.Push(quote[0]), "");
  EXPECT_EQ(stream.Push(quote[1]), "");
  EXPECT_EQ(stream.Push(quote[2]), "\xE2\x80\x99");
  EXPECT_EQ(stream.Flush(), "");
  // An unfinished sequence at the end comes out as SentencePiece decodes it.
  EXPECT_EQ(stream.Push(quote[0]), "");
  EXPECT_EQ(stream.Push(quote[1]), "");
  EXPECT_EQ(stream.Flush(), tok.Decode(std::vector<int>{quote[0], quote[1]}));
}

TEST(TokenizerShared, StreamingKeepsSentencePieceLeadingSpaceRule) {
  // Llama 2 adds a dummy prefix: "▁Hello" at the start decodes to "Hello",
  // later to " Hello".
  QLM_SHARED_PATH(model, "tokenizers/llama2.model");
  const Tokenizer tok = Tokenizer::FromFile(model);
  const std::vector<int> ids = tok.Encode("Hello world", true);
  ASSERT_EQ(ids.size(), 3u);
  StreamingDetokenizer stream(tok);
  EXPECT_EQ(stream.Push(ids[0]), "");  // BOS
  EXPECT_EQ(stream.Push(ids[1]), "Hello");
  EXPECT_EQ(stream.Push(ids[2]), " world");
  EXPECT_EQ(stream.Push(ids[1]), " Hello");
  EXPECT_EQ(stream.Flush(), "");
  // After Flush, a new stream strips the leading space again.
  EXPECT_EQ(stream.Push(ids[2]), "world");
  stream.Reset();
  EXPECT_EQ(stream.Push(ids[1]), "Hello");

  for (const char* text : {"  leading spaces", " x", "\xE2\x80\x99tis", "\xF0\x9F\x98\x80 smile",
                           "a\n\nb", " \xE4\xB8\xAD"}) {
    SCOPED_TRACE(text);
    StreamAndCheck(tok, tok.Encode(text, true));
    StreamAndCheck(tok, tok.Encode(text, false));
  }
}

// Random id sequences, rich in byte pieces (valid, invalid and unfinished
// UTF-8), control pieces and ordinary pieces: streaming must always equal
// Decode and never produce invalid UTF-8.
void RandomStreams(const Tokenizer& tok, uint32_t seed, int sequences) {
  std::vector<int> byte_ids(256, -1);
  for (int b = 0; b < 256; ++b) {
    char piece[8];
    std::snprintf(piece, sizeof(piece), "<0x%02X>", b);
    byte_ids[b] = tok.PieceToId(piece);
  }
  std::mt19937 rng(seed);
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<uint32_t>(n)); };
  for (int s = 0; s < sequences; ++s) {
    std::vector<int> ids;
    const int len = 1 + pick(40);
    for (int i = 0; i < len; ++i) {
      const int kind = pick(10);
      int id = -1;
      if (kind < 4) {  // a byte, biased towards multi-byte structure
        static const int kBytes[] = {0xE2, 0x80, 0x99, 0xF0, 0x9F, 0x98, 0xC3, 0xA9, 0x41, 0xFF};
        id = byte_ids[kind < 3 ? kBytes[pick(10)] : pick(256)];
      } else if (kind < 5) {
        id = pick(4);  // unk / control pieces at the bottom of the vocabulary
      } else {
        id = pick(tok.vocab_size());
      }
      if (id >= 0) ids.push_back(id);
    }
    SCOPED_TRACE(::testing::PrintToString(ids));
    StreamAndCheck(tok, ids);
    EXPECT_TRUE(IsValidUtf8(tok.Decode(ids)));
    if (::testing::Test::HasFailure()) return;
  }
}

TEST(TokenizerShared, RandomStreamsMatchDecodeAusten) {
  QLM_SHARED_PATH(model, "models/austen-gemma3/tokenizer.model");
  RandomStreams(Tokenizer::FromFile(model), 1, 400);
}

TEST(TokenizerShared, RandomStreamsMatchDecodeLlama2) {
  QLM_SHARED_PATH(model, "tokenizers/llama2.model");
  RandomStreams(Tokenizer::FromFile(model), 2, 400);
}

TEST(TokenizerShared, RandomStreamsMatchDecodeUnigram) {
  QLM_SHARED_PATH(model, "tokenizers/albert-unigram-30k.model");
  RandomStreams(Tokenizer::FromFile(model), 3, 200);
}

TEST(TokenizerShared, RandomStreamsMatchDecodeGemma3) {
  QLM_SHARED_PATH(model, "tokenizers/gemma3.model");
  RandomStreams(Tokenizer::FromFile(model), 4, 200);
}

}  // namespace
}  // namespace qlm
