// SentencePiece tokenizer (via Debian's libsentencepiece) and a streaming
// detokenizer for generated text.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace qlm {

class Tokenizer {
 public:
  // A tokenizer.model file. Throws qlm::Error naming the path.
  static Tokenizer FromFile(const std::string& path);
  // The bytes of a serialized SentencePiece ModelProto (what a tokenizer.model
  // file holds; the .qlm format embeds them). `source` names it in errors.
  static Tokenizer FromSerializedProto(std::string_view bytes,
                                       const std::string& source = "tokenizer proto");

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // SentencePiece ids of `text`, preceded by bos_id() if add_bos (an error
  // if the model has no BOS piece).
  std::vector<int> Encode(std::string_view text, bool add_bos) const;
  // What SentencePiece decodes `ids` to: control tokens (BOS, EOS, ...) are
  // invisible, byte-fallback runs become UTF-8 (U+FFFD per invalid byte).
  // Throws on an id outside [0, vocab_size()).
  std::string Decode(std::span<const int> ids) const;

  // The piece for `id` ("▁the", "<0xE2>", "<s>"); throws if out of range.
  std::string IdToPiece(int id) const;
  // The id of `piece`, or -1 if the vocabulary has no such piece.
  int PieceToId(std::string_view piece) const;

  int vocab_size() const;
  int bos_id() const;  // -1 if none
  int eos_id() const;  // -1 if none
  int pad_id() const;  // -1 if none
  int unk_id() const;
  bool IsControl(int id) const;  // <s>, </s>, <pad>, ...: decode to nothing
  bool IsByte(int id) const;     // byte-fallback pieces <0x00> ... <0xFF>

  // The serialized ModelProto this tokenizer was loaded from.
  const std::string& serialized_proto() const;

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  void CheckId(int id) const;
  std::unique_ptr<Impl> impl_;

  friend class StreamingDetokenizer;
};

// Turns generated ids into text one id at a time. Push() returns only
// complete UTF-8: a character spelled by several byte-fallback tokens
// (<0xE2><0x80><0x99>) comes out whole once its last byte arrives, and
// SentencePiece's leading-space rule applies once at the start of the
// stream, as in Decode(). So the concatenation of every Push() plus Flush()
// equals tokenizer.Decode(all ids).
class StreamingDetokenizer {
 public:
  // `tokenizer` must outlive this object.
  explicit StreamingDetokenizer(const Tokenizer& tokenizer);

  // Text completed by `id` (often empty or one piece). Throws on a bad id.
  std::string Push(int id);
  // Text still held back (an unfinished byte sequence, decoded as
  // SentencePiece does: U+FFFD per byte). Call at the end of the stream.
  std::string Flush();
  // Starts a new stream.
  void Reset();

 private:
  std::string DecodeWindow() const;

  const Tokenizer& tok_;
  // Ids since the last point where everything decoded so far was emitted.
  std::vector<int> window_;
  // Whether text was emitted before window_: SentencePiece then no longer
  // strips a leading space, which DecodeWindow reproduces by decoding the
  // window behind a fixed anchor piece.
  bool text_before_window_ = false;
  size_t emitted_in_window_ = 0;  // bytes of DecodeWindow() already returned
};

}  // namespace qlm
