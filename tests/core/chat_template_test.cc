// Chat templates (core/chat_template.h): the exact token layout of Gemma and
// Llama 2 turns, control pieces found by name, and that a chat continued
// through the KV cache gives the same logits as the whole conversation
// evaluated at once. Uses the shared models (../shared).
#include "core/chat_template.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "base/error.h"
#include "core/qlm.h"
#include "golden_util.h"

namespace qlm {
namespace {

Model LoadShared(const std::string& rel) {
  const std::string dir = testing::SharedPath(rel);
  if (!std::filesystem::exists(dir)) throw Error("missing test data: " + dir);
  return Model::Load(dir);
}

std::vector<int32_t> Enc(const Tokenizer& t, const std::string& s) {
  const std::vector<int> ids = t.Encode(s, false);
  return {ids.begin(), ids.end()};
}

std::vector<int32_t> Cat(std::initializer_list<std::vector<int32_t>> parts) {
  std::vector<int32_t> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

TEST(ChatTemplate, GemmaLayoutUsesPiecesFromTheTokenizer) {
  const Model m = LoadShared("models/austen-gemma3");
  const Tokenizer& t = m.tokenizer();
  const ChatTemplate tmpl(t, m.config().arch);
  EXPECT_EQ(tmpl.style(), ChatStyle::kGemma);
  const int32_t sot = t.PieceToId("<start_of_turn>"), eot = t.PieceToId("<end_of_turn>");
  ASSERT_GE(sot, 0);
  ASSERT_GE(eot, 0);
  EXPECT_EQ(tmpl.end_of_turn(), eot);
  EXPECT_TRUE(tmpl.IsEndOfTurn(eot));
  EXPECT_FALSE(tmpl.IsEndOfTurn(t.eos_id()));

  // First turn: BOS, the system text folded into the user turn.
  const std::vector<int32_t> first = tmpl.UserTurn({}, "Be brief.", "Hello");
  EXPECT_EQ(first, Cat({{t.bos_id(), sot},
                        Enc(t, "user\nBe brief.\n\nHello"),
                        {eot},
                        Enc(t, "\n"),
                        {sot},
                        Enc(t, "model\n")}));
  // A later turn after an answer that ended with <end_of_turn>: no BOS, no
  // system text, "\n" closes the model's turn.
  std::vector<int32_t> history = first;
  history.push_back(42);
  history.push_back(eot);
  const std::vector<int32_t> next = tmpl.UserTurn(history, "Be brief.", "Again");
  EXPECT_EQ(next, Cat({Enc(t, "\n"),
                       {sot},
                       Enc(t, "user\nAgain"),
                       {eot},
                       Enc(t, "\n"),
                       {sot},
                       Enc(t, "model\n")}));
  // An answer cut off (no <end_of_turn>) is closed first.
  history.pop_back();
  const std::vector<int32_t> closed = tmpl.UserTurn(history, "", "Again");
  ASSERT_FALSE(closed.empty());
  EXPECT_EQ(closed.front(), eot);
  EXPECT_EQ(std::vector<int32_t>(closed.begin() + 1, closed.end()), next);
}

TEST(ChatTemplate, Llama2Layout) {
  const Model m = LoadShared("fixtures/tiny-llama");
  const Tokenizer& t = m.tokenizer();
  const ChatTemplate tmpl(t, m.config().arch);
  EXPECT_EQ(tmpl.style(), ChatStyle::kLlama2);
  EXPECT_EQ(tmpl.end_of_turn(), t.eos_id());
  const std::vector<int32_t> first = tmpl.UserTurn({}, "Sys", "Hi");
  EXPECT_EQ(first, Cat({{t.bos_id()}, Enc(t, "[INST] <<SYS>>\nSys\n<</SYS>>\n\nHi [/INST]")}));
  std::vector<int32_t> history = first;
  history.push_back(t.eos_id());
  EXPECT_EQ(tmpl.UserTurn(history, "Sys", "More"),
            Cat({{t.bos_id()}, Enc(t, "[INST] More [/INST]")}));
}

// Continuing a chat through the cache must equal evaluating the whole
// conversation from scratch: the history is never re-prefilled, and nothing
// of it is lost.
TEST(ChatTemplate, SecondTurnPrefillsOnlyItsTokens) {
  const Model m = LoadShared("models/austen-gemma3");
  const ChatTemplate tmpl(m.tokenizer(), m.config().arch);
  SessionOptions so;
  so.context = 256;
  Session chat(m, so);
  GenerateParams gp;
  gp.sampling.temperature = 0.0f;
  gp.max_tokens = 4;
  const std::vector<int32_t> t1 = tmpl.UserTurn(chat.tokens(), "", "It is a truth");
  const GenerateStats s1 = chat.Generate(t1, gp, nullptr);
  EXPECT_EQ(s1.prompt_tokens, t1.size());
  const size_t cached = chat.position();
  const std::vector<int32_t> t2 = tmpl.UserTurn(chat.tokens(), "", "And?");
  const size_t pending = chat.tokens().size() - cached;
  gp.max_tokens = 1;
  const GenerateStats s2 = chat.Generate(t2, gp, nullptr);
  EXPECT_EQ(s2.prompt_tokens, pending + t2.size());
  EXPECT_LT(s2.prompt_tokens, cached);

  // The same ids from scratch give the same first answer token.
  const std::vector<int32_t> all(chat.tokens().begin(), chat.tokens().end() - 1);
  Session fresh(m, so);
  const std::span<const float> logits = fresh.Forward(all);
  int32_t best = 0;
  for (size_t i = 1; i < logits.size(); ++i) {
    if (logits[i] > logits[static_cast<size_t>(best)]) best = static_cast<int32_t>(i);
  }
  EXPECT_EQ(best, chat.tokens().back());
}

}  // namespace
}  // namespace qlm
