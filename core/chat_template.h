// Chat templates: turn a conversation into token ids the way the model was
// trained on (Hugging Face's chat_template), one turn at a time so a chat can
// keep its KV cache and prefill only the new turn.
//
//   Gemma (all versions; no system role: the system text is prepended to the
//   first user turn, as HF's template does):
//     <bos><start_of_turn>user\n{system}\n\n{msg}<end_of_turn>\n<start_of_turn>model\n
//     {answer}<end_of_turn>\n<start_of_turn>user\n...
//   Llama 2:
//     <s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{msg} [/INST] {answer} </s><s>[INST] ...
//
// Control pieces (<start_of_turn>, <end_of_turn>, BOS, EOS) are looked up in
// the tokenizer by name, never hard-coded; text is encoded without them.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/tokenizer.h"
#include "loaders/model_config.h"

namespace qlm {

enum class ChatStyle : uint8_t { kGemma, kLlama2 };

class ChatTemplate {
 public:
  // The style follows the architecture (Gemma family or Llama). Throws
  // qlm::Error if the tokenizer lacks a piece the style needs (e.g. a Gemma
  // tokenizer without <start_of_turn>).
  ChatTemplate(const Tokenizer& tokenizer, Arch arch);

  ChatStyle style() const { return style_; }
  const char* name() const { return style_ == ChatStyle::kGemma ? "gemma" : "llama2"; }

  // The ids to append for one user turn, ending with the header of the
  // model's answer. `history` is the session's sequence so far (empty at the
  // start of a conversation: then BOS and the system text are included);
  // when the previous answer did not end with the end-of-turn token (it was
  // cut off), that token is inserted first.
  std::vector<int32_t> UserTurn(std::span<const int32_t> history, std::string_view system,
                                std::string_view message) const;

  // Whether `id` ends the model's turn (<end_of_turn> for Gemma, EOS for
  // Llama 2). Generation should also stop on the model's own stop ids.
  bool IsEndOfTurn(int32_t id) const { return id == end_of_turn_; }
  int32_t end_of_turn() const { return end_of_turn_; }

 private:
  void Append(std::vector<int32_t>& out, std::string_view text) const;

  const Tokenizer* tok_;
  ChatStyle style_;
  int32_t bos_ = -1;
  int32_t start_of_turn_ = -1;  // Gemma only
  int32_t end_of_turn_ = -1;    // Gemma: <end_of_turn>; Llama 2: EOS
};

}  // namespace qlm
