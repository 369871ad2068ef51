#include "core/tokenizer.h"

#include <sentencepiece_processor.h>

#include <fstream>
#include <sstream>
#include <utility>

#include "base/error.h"
#include "loaders/sentencepiece_check.h"

namespace qlm {

struct Tokenizer::Impl {
  sentencepiece::SentencePieceProcessor sp;
  std::string proto;
  std::string source;
  // A plain piece whose decoded text is anchor_text (non-empty, no leading
  // space). Decoding [anchor, ids...] and dropping anchor_text gives what ids
  // decode to in the middle of a stream, where SentencePiece strips no
  // leading space (see StreamingDetokenizer).
  int anchor = -1;
  std::string anchor_text;
};

namespace {

// The byte a byte-fallback piece ("<0xE2>") stands for, or -1.
int PieceByte(const std::string& piece) {
  if (piece.size() != 6 || piece.compare(0, 3, "<0x") != 0 || piece[5] != '>') return -1;
  int value = 0;
  for (int i = 3; i < 5; ++i) {
    const char c = piece[i];
    int digit = -1;
    if (c >= '0' && c <= '9') digit = c - '0';
    if (c >= 'A' && c <= 'F') digit = c - 'A' + 10;
    if (c >= 'a' && c <= 'f') digit = c - 'a' + 10;
    if (digit < 0) return -1;
    value = value * 16 + digit;
  }
  return value;
}

// How many bytes a UTF-8 sequence starting with `lead` has, as
// SentencePiece's decoder reads it; 0 if `lead` cannot start one.
int SequenceLength(uint8_t lead) {
  if (lead < 0x80) return 1;
  if ((lead & 0xE0) == 0xC0) return 2;
  if ((lead & 0xF0) == 0xE0) return 3;
  if ((lead & 0xF8) == 0xF0) return 4;
  return 0;
}

bool IsTrailByte(uint8_t b) { return (b & 0xC0) == 0x80; }

}  // namespace

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::FromFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot open tokenizer " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw Error("cannot read tokenizer " + path);
  return FromSerializedProto(ss.str(), path);
}

Tokenizer Tokenizer::FromSerializedProto(std::string_view bytes, const std::string& source) {
  auto impl = std::make_unique<Impl>();
  impl->proto.assign(bytes.data(), bytes.size());
  impl->source = source;
  if (impl->proto.empty()) throw Error(source + " is empty, not a SentencePiece model");
  // libsentencepiece trusts the normalizer's trie; a crafted one crashes it.
  CheckSentencePieceProto(impl->proto, source);
  const auto status = [&] {
    try {
      return impl->sp.LoadFromSerializedProto(impl->proto);
    } catch (const std::exception& e) {  // its trie builder (Darts) throws on some bad models
      throw Error(source + " is not a valid SentencePiece model: " + e.what());
    }
  }();
  if (!status.ok()) {
    throw Error(source + " is not a valid SentencePiece model: " + status.ToString());
  }
  const int n = impl->sp.GetPieceSize();
  if (n <= 0) throw Error(source + " has no pieces");

  for (int id = 0; id < n && impl->anchor < 0; ++id) {
    if (impl->sp.IsControl(id) || impl->sp.IsUnknown(id) || impl->sp.IsUnused(id) ||
        impl->sp.IsByte(id)) {
      continue;
    }
    std::string text;
    if (!impl->sp.Decode(std::vector<int>{id}, &text).ok()) continue;
    if (!text.empty() && text[0] != ' ' && impl->sp.IdToPiece(id) == text) {
      impl->anchor = id;
      impl->anchor_text = text;
    }
  }
  return Tokenizer(std::move(impl));
}

void Tokenizer::CheckId(int id) const {
  if (id < 0 || id >= vocab_size()) {
    throw Error("token id " + std::to_string(id) + " is outside the vocabulary of " +
                impl_->source + " (" + std::to_string(vocab_size()) + " pieces)");
  }
}

std::vector<int> Tokenizer::Encode(std::string_view text, bool add_bos) const {
  std::vector<int> pieces;
  const auto status = impl_->sp.Encode(absl::string_view(text.data(), text.size()), &pieces);
  if (!status.ok()) throw Error("cannot tokenize text: " + status.ToString());
  if (!add_bos) return pieces;
  if (bos_id() < 0) throw Error(impl_->source + " has no BOS piece to add");
  std::vector<int> ids;
  ids.reserve(pieces.size() + 1);
  ids.push_back(bos_id());
  ids.insert(ids.end(), pieces.begin(), pieces.end());
  return ids;
}

std::string Tokenizer::Decode(std::span<const int> ids) const {
  for (int id : ids) CheckId(id);
  std::string text;
  const auto status = impl_->sp.Decode(std::vector<int>(ids.begin(), ids.end()), &text);
  if (!status.ok()) throw Error("cannot decode token ids: " + status.ToString());
  return text;
}

std::string Tokenizer::IdToPiece(int id) const {
  CheckId(id);
  return impl_->sp.IdToPiece(id);
}

int Tokenizer::PieceToId(std::string_view piece) const {
  const absl::string_view p(piece.data(), piece.size());
  const int id = impl_->sp.PieceToId(p);
  // SentencePiece answers unk_id for a piece it does not know.
  if (id < 0 || (id == impl_->sp.unk_id() && impl_->sp.IdToPiece(id) != piece)) return -1;
  return id;
}

int Tokenizer::vocab_size() const { return impl_->sp.GetPieceSize(); }
int Tokenizer::bos_id() const { return impl_->sp.bos_id(); }
int Tokenizer::eos_id() const { return impl_->sp.eos_id(); }
int Tokenizer::pad_id() const { return impl_->sp.pad_id(); }
int Tokenizer::unk_id() const { return impl_->sp.unk_id(); }

bool Tokenizer::IsControl(int id) const {
  CheckId(id);
  return impl_->sp.IsControl(id);
}

bool Tokenizer::IsByte(int id) const {
  CheckId(id);
  return impl_->sp.IsByte(id);
}

const std::string& Tokenizer::serialized_proto() const { return impl_->proto; }

// ---- StreamingDetokenizer ----
//
// SentencePiece decodes a sequence as the concatenation of one surface per
// piece, with two exceptions that depend on context:
//  1. a run of byte pieces is decoded as UTF-8 as a whole, each invalid or
//     unfinished byte becoming U+FFFD;
//  2. while no text has been produced yet, a leading "▁" is dropped.
// The detokenizer therefore keeps a window of the ids since the last point
// where all text so far was final, decodes it with SentencePiece itself, and
// returns the new part. Bytes that may still be completed by later ids (an
// unfinished UTF-8 sequence at the end) are held back. Once text has been
// produced, the window is decoded behind an anchor piece so that rule 2
// stays off, exactly as in a decode of the whole sequence.

StreamingDetokenizer::StreamingDetokenizer(const Tokenizer& tokenizer) : tok_(tokenizer) {}

void StreamingDetokenizer::Reset() {
  window_.clear();
  text_before_window_ = false;
  emitted_in_window_ = 0;
}

std::string StreamingDetokenizer::DecodeWindow() const {
  // Decodes window_ (all of it) in the stream's context.
  if (!text_before_window_) return tok_.Decode(window_);
  const Tokenizer::Impl& impl = *tok_.impl_;
  if (impl.anchor < 0) {
    throw Error(impl.source + " has no plain piece to anchor streaming decode on");
  }
  std::vector<int> ids;
  ids.reserve(window_.size() + 1);
  ids.push_back(impl.anchor);
  ids.insert(ids.end(), window_.begin(), window_.end());
  std::string text = tok_.Decode(ids);
  if (text.compare(0, impl.anchor_text.size(), impl.anchor_text) != 0) {
    throw Error("streaming decode: anchor piece decoded unexpectedly in " + impl.source);
  }
  return text.substr(impl.anchor_text.size());
}

std::string StreamingDetokenizer::Push(int id) {
  const bool is_byte = tok_.IsByte(id);  // also checks the id
  window_.push_back(id);

  // How many trailing byte pieces form an unfinished UTF-8 sequence (a lead
  // byte followed only by continuation bytes, fewer than it needs).
  size_t pending = 0;
  if (is_byte) {
    const size_t n = window_.size();
    for (size_t k = 1; k <= 3 && k <= n; ++k) {
      const int lead_id = window_[n - k];
      if (!tok_.IsByte(lead_id)) break;
      const int lead = PieceByte(tok_.IdToPiece(lead_id));
      if (lead < 0) break;
      if (!IsTrailByte(static_cast<uint8_t>(lead))) {
        if (SequenceLength(static_cast<uint8_t>(lead)) > static_cast<int>(k)) pending = k;
        break;
      }
    }
  }

  std::string text;
  if (pending > 0) {
    // Decode without the unfinished bytes: everything before them is final.
    std::vector<int> held(window_.end() - static_cast<std::ptrdiff_t>(pending), window_.end());
    window_.resize(window_.size() - pending);
    try {
      text = DecodeWindow();
    } catch (...) {
      window_.insert(window_.end(), held.begin(), held.end());
      throw;
    }
    window_.insert(window_.end(), held.begin(), held.end());
  } else {
    text = DecodeWindow();
  }

  if (text.size() < emitted_in_window_) {
    throw Error("streaming decode: text shrank (tokenizer " + tok_.impl_->source + ")");
  }
  std::string out = text.substr(emitted_in_window_);
  emitted_in_window_ = text.size();
  if (pending == 0 && (text_before_window_ || !text.empty())) {
    // Everything decoded so far is final: start a new window.
    text_before_window_ = true;
    window_.clear();
    emitted_in_window_ = 0;
  }
  return out;
}

std::string StreamingDetokenizer::Flush() {
  const std::string text = DecodeWindow();
  std::string out = text.size() > emitted_in_window_ ? text.substr(emitted_in_window_) : "";
  Reset();
  return out;
}

}  // namespace qlm
