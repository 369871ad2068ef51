#include "core/chat_template.h"

#include <string>

#include "base/error.h"

namespace qlm {

ChatTemplate::ChatTemplate(const Tokenizer& tokenizer, Arch arch)
    : tok_(&tokenizer),
      style_(arch == Arch::kLlama ? ChatStyle::kLlama2 : ChatStyle::kGemma),
      bos_(tokenizer.bos_id()) {
  if (style_ == ChatStyle::kGemma) {
    start_of_turn_ = tokenizer.PieceToId("<start_of_turn>");
    end_of_turn_ = tokenizer.PieceToId("<end_of_turn>");
    if (start_of_turn_ < 0 || end_of_turn_ < 0) {
      throw Error(
          "the tokenizer has no <start_of_turn>/<end_of_turn> pieces, so the model has no Gemma "
          "chat template (chat needs an instruction-tuned model; use qlm run for plain text)");
    }
  } else {
    end_of_turn_ = tokenizer.eos_id();
    if (end_of_turn_ < 0) {
      throw Error("the tokenizer has no EOS piece, so the Llama 2 chat template cannot end turns");
    }
  }
  if (bos_ < 0) throw Error("the tokenizer has no BOS piece, needed to start a chat");
}

void ChatTemplate::Append(std::vector<int32_t>& out, std::string_view text) const {
  if (text.empty()) return;
  for (const int id : tok_->Encode(text, /*add_bos=*/false)) out.push_back(id);
}

std::vector<int32_t> ChatTemplate::UserTurn(std::span<const int32_t> history,
                                            std::string_view system,
                                            std::string_view message) const {
  std::vector<int32_t> out;
  const bool first = history.empty();
  if (first) {
    out.push_back(bos_);
  } else if (history.back() != end_of_turn_) {
    out.push_back(end_of_turn_);  // the previous answer was cut off: close it
  }
  if (style_ == ChatStyle::kGemma) {
    if (!first) Append(out, "\n");  // "<end_of_turn>\n" closes the model's turn
    out.push_back(start_of_turn_);
    std::string text = "user\n";
    if (first && !system.empty()) {
      text += system;
      text += "\n\n";
    }
    text += message;
    Append(out, text);
    out.push_back(end_of_turn_);
    Append(out, "\n");
    out.push_back(start_of_turn_);
    Append(out, "model\n");
  } else {
    if (!first) out.push_back(bos_);  // every Llama 2 exchange is <s>[INST] ... [/INST] ... </s>
    std::string text = "[INST] ";
    if (first && !system.empty()) {
      text += "<<SYS>>\n";
      text += system;
      text += "\n<</SYS>>\n\n";
    }
    text += message;
    text += " [/INST]";
    Append(out, text);
  }
  return out;
}

}  // namespace qlm
