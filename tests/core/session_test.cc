// The library API (core/qlm.h): generation on top of Forward, stop rules,
// constrained-decoding hooks, multi-turn continuation, threads, and loading
// options. Uses the shared models (../shared).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "base/error.h"
#include "core/forward.h"
#include "core/model.h"
#include "core/qlm.h"
#include "golden_util.h"
#include "shared_model.h"

namespace qlm {
namespace {

const Model& Austen() { return testing::AustenModel(); }

GenerateParams Greedy(int max_tokens) {
  GenerateParams p;
  p.sampling.temperature = 0.0f;
  p.max_tokens = max_tokens;
  p.stop_at_eos = false;
  return p;
}

std::vector<int32_t> GenerateIds(Session& s, std::span<const int32_t> prompt,
                                 const GenerateParams& p, GenerateStats* stats = nullptr) {
  std::vector<int32_t> out;
  const GenerateStats st = s.Generate(prompt, p, [&](int32_t id, std::string_view) {
    out.push_back(id);
    return true;
  });
  if (stats) *stats = st;
  return out;
}

TEST(Session, GreedyGenerateReproducesGoldenContinuation) {
  for (const testing::Golden& g : testing::ReadGoldens(Austen().dir())) {
    Session s(Austen());
    GenerateStats st;
    const std::vector<int32_t> got = GenerateIds(s, g.ids, Greedy(24), &st);
    EXPECT_EQ(got, g.greedy) << g.name;
    EXPECT_EQ(st.prompt_tokens, g.ids.size());
    EXPECT_EQ(st.generated, 24u);
    EXPECT_EQ(st.decode_evals, 23u);  // the last sampled token is not evaluated
    EXPECT_EQ(st.stop, StopReason::kMaxTokens);
    EXPECT_EQ(s.position(), g.ids.size() + 23);
    EXPECT_EQ(s.tokens().size(), g.ids.size() + 24);
  }
}

TEST(Session, TextPromptStartsWithBosAndStreamsText) {
  Session s(Austen());
  std::string text;
  s.Generate("It is a truth universally acknowledged", Greedy(30),
             [&](int32_t, std::string_view piece) {
               text += piece;
               return true;
             });
  EXPECT_EQ(s.tokens()[0], Austen().tokenizer().bos_id());
  // The streamed pieces are exactly the decoded continuation.
  const std::span<const int32_t> all = s.tokens();
  const size_t n_prompt = all.size() - 30;
  const std::string whole = Austen().tokenizer().Decode(std::vector<int>(all.begin(), all.end()));
  const std::string prompt = Austen().tokenizer().Decode(
      std::vector<int>(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(n_prompt)));
  EXPECT_FALSE(text.empty());
  EXPECT_EQ(prompt + text, whole);
}

TEST(Session, SecondGenerateContinuesTheSequence) {
  const std::vector<int32_t> prompt = {2, 1014, 368, 264, 1871};
  Session one(Austen());
  const std::vector<int32_t> all = GenerateIds(one, prompt, Greedy(20));
  Session two(Austen());
  std::vector<int32_t> parts = GenerateIds(two, prompt, Greedy(8));
  const std::vector<int32_t> rest = GenerateIds(two, {}, Greedy(12));
  parts.insert(parts.end(), rest.begin(), rest.end());
  EXPECT_EQ(parts, all);
  // Reset forgets everything: the same call gives the same tokens again.
  two.Reset();
  EXPECT_EQ(two.position(), 0u);
  EXPECT_EQ(GenerateIds(two, prompt, Greedy(20)), all);
}

TEST(Session, CallbackReturningFalseStops) {
  Session s(Austen());
  int calls = 0;
  const GenerateStats st =
      s.Generate("Emma", Greedy(50), [&](int32_t, std::string_view) { return ++calls < 3; });
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(st.generated, 3u);
  EXPECT_EQ(st.stop, StopReason::kCallback);
}

TEST(Session, StopTokenEndsGenerationWithoutCallback) {
  ASSERT_FALSE(Austen().stop_ids().empty());
  const int32_t eos = Austen().stop_ids()[0];
  Session s(Austen());
  GenerateParams p = Greedy(50);
  p.stop_at_eos = true;
  int step = 0;
  // Force the stop token on the third step.
  p.logit_filter = [&](std::span<float> logits) {
    if (++step == 3) {
      std::fill(logits.begin(), logits.end(), -std::numeric_limits<float>::infinity());
      logits[static_cast<size_t>(eos)] = 0.0f;
    }
  };
  GenerateStats st;
  const std::vector<int32_t> got = GenerateIds(s, std::vector<int32_t>{2, 1014}, p, &st);
  EXPECT_EQ(got.size(), 2u);
  EXPECT_EQ(st.generated, 3u);
  EXPECT_EQ(st.stop, StopReason::kStopToken);
  EXPECT_EQ(s.tokens().back(), eos);
}

TEST(Session, AcceptTokenRejectionsAreResampled) {
  const std::vector<int32_t> prompt = {2, 1014, 368, 264, 1871};
  Session free_run(Austen());
  const std::vector<int32_t> unconstrained = GenerateIds(free_run, prompt, Greedy(10));
  const int32_t banned = unconstrained[0];
  Session s(Austen());
  GenerateParams p = Greedy(10);
  int asked = 0;
  p.accept_token = [&](int32_t id) {
    ++asked;
    return id != banned;
  };
  const std::vector<int32_t> got = GenerateIds(s, prompt, p);
  ASSERT_EQ(got.size(), 10u);
  EXPECT_EQ(std::count(got.begin(), got.end(), banned), 0);
  EXPECT_NE(got[0], unconstrained[0]);
  EXPECT_GE(asked, 11);  // at least one rejection
  // Rejecting everything is an error, not a hang.
  Session s2(Austen());
  GenerateParams all_rejected = Greedy(1);
  all_rejected.accept_token = [](int32_t) { return false; };
  EXPECT_THROW(GenerateIds(s2, prompt, all_rejected), Error);
}

TEST(Session, StopsWhenContextIsFull) {
  SessionOptions so;
  so.context = 8;
  Session s(Austen(), so);
  GenerateStats st;
  const std::vector<int32_t> prompt = {2, 1014, 368, 264, 1871};
  GenerateIds(s, prompt, Greedy(-1), &st);
  EXPECT_EQ(st.stop, StopReason::kContextFull);
  EXPECT_EQ(s.position(), 8u);
  EXPECT_EQ(st.generated, 4u);  // 3 fill the context, a 4th is sampled but never evaluated
  // A prompt that cannot fit is a usage error.
  Session small(Austen(), so);
  const std::vector<int32_t> long_prompt(9, 264);
  EXPECT_THROW(GenerateIds(small, long_prompt, Greedy(1)), UsageError);
}

TEST(Session, ForwardRejectsBadInput) {
  SessionOptions so;
  so.context = 4;
  Session s(Austen(), so);
  const std::vector<int32_t> bad_id = {2, 8000};
  EXPECT_THROW(s.Forward(bad_id), UsageError);
  const std::vector<int32_t> negative = {-1};
  EXPECT_THROW(s.Forward(negative), UsageError);
  EXPECT_EQ(s.position(), 0u);
  const std::vector<int32_t> five = {2, 3, 4, 5, 6};
  EXPECT_THROW(s.Forward(five), Error);
  const std::vector<int32_t> four = {2, 3, 4, 5};
  EXPECT_NO_THROW(s.Forward(four));
  EXPECT_THROW(s.Forward(std::vector<int32_t>{7}), Error);
}

TEST(Session, SameSeedSameSampledText) {
  GenerateParams p;
  p.max_tokens = 40;
  p.stop_at_eos = false;
  p.sampling.temperature = 1.0f;
  p.sampling.seed = 1234;
  const std::vector<int32_t> prompt = {2, 1014};
  Session a(Austen()), b(Austen());
  EXPECT_EQ(GenerateIds(a, prompt, p), GenerateIds(b, prompt, p));
}

TEST(Session, ThreadCountDoesNotChangeResults) {
  const testing::Golden g = testing::ReadGoldens(Austen().dir()).back();
  const size_t vocab = g.vocab;
  SessionOptions one, two;
  two.threads = 2;
  Session a(Austen(), one), b(Austen(), two);
  EXPECT_EQ(b.threads(), 2u);
  const std::span<const float> la = a.Forward(g.ids, true);
  const std::vector<float> first(la.begin(), la.end());
  const std::span<const float> lb = b.Forward(g.ids, true);
  const std::vector<float> second(lb.begin(), lb.end());
  // Threads split matmul rows and attention heads; a SIMD kernel may round
  // differently on a shorter range (tail paths), so allow float noise, but
  // every position's greedy choice must be the same.
  const float scale = testing::MaxAbs(first.data(), first.size());
  EXPECT_LE(testing::MaxAbsDiff(first.data(), second.data(), first.size()), 1e-5f * scale);
  for (size_t p = 0; p < g.ids.size(); ++p) {
    const float* x = first.data() + p * vocab;
    const float* y = second.data() + p * vocab;
    ASSERT_EQ(std::max_element(x, x + vocab) - x, std::max_element(y, y + vocab) - y) << p;
  }
  // And generation is identical.
  Session c(Austen(), one), d(Austen(), two);
  EXPECT_EQ(GenerateIds(c, g.ids, Greedy(24)), GenerateIds(d, g.ids, Greedy(24)));
}

TEST(Session, LinearProfileTimesEveryDecodeLinearOnce) {
  // Decode steps add one loop per linear input and layer (q/k/v together,
  // gate + up together, the head once) and exactly the weight bytes of
  // every linear; prefill and steps after SetLinearProfile(nullptr) add
  // nothing.
  const Model& m = Austen();
  const ModelWeights& w = m.weights();
  uint64_t linear_bytes = w.lm_head.desc.total_bytes;
  for (const LayerWeights& l : w.layers) {
    for (const QTensor* t : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) {
      linear_bytes += t->desc.total_bytes;
    }
  }
  for (size_t threads : {1, 2}) {
    SCOPED_TRACE("threads=" + std::to_string(threads));
    SessionOptions so;
    so.threads = threads;
    Session s(m, so);
    LinearProfile p;
    s.SetLinearProfile(&p);
    const std::vector<int32_t> prompt = {2, 100, 200, 300};
    s.Forward(prompt);
    EXPECT_EQ(p.size, 0u) << "prefill was recorded";
    constexpr uint64_t kSteps = 3;
    for (uint64_t i = 0; i < kSteps; ++i) {
      const int32_t id = static_cast<int32_t>(400 + i);
      s.Forward(std::span<const int32_t>(&id, 1));
    }
    const uint64_t layers = w.layers.size();
    uint64_t calls = 0, bytes = 0;
    ASSERT_GT(p.size, 0u);
    for (size_t i = 0; i < p.size; ++i) {
      const LinearProfileEntry& e = p.entries[i];
      EXPECT_GT(e.ns, 0u);
      EXPECT_EQ(e.calls % kSteps, 0u) << e.rows << " x " << e.cols;
      calls += e.calls;
      bytes += e.bytes;
    }
    EXPECT_EQ(p.other.calls, 0u);
    EXPECT_EQ(calls, kSteps * (4 * layers + 1));  // qkv, o, gate+up, down; the head
    EXPECT_EQ(bytes, kSteps * linear_bytes);
    s.SetLinearProfile(nullptr);
    const int32_t id = 500;
    s.Forward(std::span<const int32_t>(&id, 1));
    uint64_t calls_after = 0;
    for (size_t i = 0; i < p.size; ++i) calls_after += p.entries[i].calls;
    EXPECT_EQ(calls_after, calls);
  }
}

TEST(Session, PrefillLinearProfileTimesEveryPrefillLinearOnce) {
  // A prefill batch of n tokens adds one loop per linear input and layer
  // with n activation rows, and the head once with one row (only the last
  // token's logits are computed); decode steps add nothing to it.
  const Model& m = Austen();
  const uint64_t layers = m.weights().layers.size();
  for (size_t threads : {1, 2}) {
    SCOPED_TRACE("threads=" + std::to_string(threads));
    SessionOptions so;
    so.threads = threads;
    Session s(m, so);
    LinearProfile p;
    s.SetPrefillLinearProfile(&p);
    const std::vector<int32_t> prompt = {2, 100, 200, 300, 400};
    s.Forward(prompt);
    const int32_t id = 500;
    s.Forward(std::span<const int32_t>(&id, 1));
    ASSERT_GT(p.size, 0u);
    uint64_t calls = 0, rows = 0;
    for (size_t i = 0; i < p.size; ++i) {
      const LinearProfileEntry& e = p.entries[i];
      EXPECT_GT(e.ns, 0u);
      calls += e.calls;
      rows += e.act_rows;
    }
    EXPECT_EQ(calls, 4 * layers + 1);  // qkv, o, gate+up, down; the head
    EXPECT_EQ(rows, 4 * layers * prompt.size() + 1);
    s.SetPrefillLinearProfile(nullptr);
  }
}

TEST(LinearProfile, SumsPerShapeAndOverflowsIntoOther) {
  LinearProfile p;
  p.Add(8, 16, Format::kQ4, 1, 100, 64);
  p.Add(8, 16, Format::kQ4, 5, 50, 64);
  p.Add(8, 16, Format::kInt8, 1, 10, 128);  // same shape, other format: its own entry
  ASSERT_EQ(p.size, 2u);
  EXPECT_EQ(p.entries[0].calls, 2u);
  EXPECT_EQ(p.entries[0].act_rows, 6u);
  EXPECT_EQ(p.entries[0].ns, 150u);
  EXPECT_EQ(p.entries[0].bytes, 128u);
  EXPECT_EQ(p.entries[1].format, Format::kInt8);
  for (uint64_t r = 0; r < LinearProfile::kMaxEntries; ++r) {
    p.Add(100 + r, 16, Format::kF32, 1, 1, 4);
  }
  EXPECT_EQ(p.size, LinearProfile::kMaxEntries);
  EXPECT_EQ(p.other.calls, 2u);  // the two shapes that found no free entry
  EXPECT_EQ(p.other.bytes, 8u);
  p.Clear();
  EXPECT_EQ(p.size, 0u);
  EXPECT_EQ(p.other.calls, 0u);
}

TEST(Session, SlidingWindowKvIsIndependentOfContext) {
  SessionOptions small, large;
  small.context = 256;
  large.context = 2048;
  Session a(Austen(), small), b(Austen(), large);
  // Austen: 5 sliding layers (window 128) and 1 global layer, 1 kv head of 64.
  const size_t global_row = 2 * 64 * sizeof(float) + sizeof(int32_t);
  EXPECT_GE(b.kv_bytes() - a.kv_bytes(), (2048 - 256) * global_row);
  EXPECT_LE(b.kv_bytes() - a.kv_bytes(), (2048 - 256) * global_row + 4096);
}

TEST(Session, StaysValidWhenTheModelObjectMoves) {
  const std::string dir = testing::SharedPath("fixtures/tiny-llama");
  const testing::Golden g = testing::ReadGoldens(dir)[0];
  Model model = Model::Load(dir);
  Session s(model);
  std::vector<Model> owner;
  owner.push_back(std::move(model));  // e.g. stored in a container after use began
  const std::span<const float> l = s.Forward(g.ids, true);
  const float scale = testing::MaxAbs(g.logits.data(), g.logits.size());
  EXPECT_LE(testing::MaxAbsDiff(l.data(), g.logits.data(), l.size()), 1e-3f + 1e-3f * scale);
}

TEST(Model, ConvertsWeightsWhenAskedToQuantize) {
  // The trained model: random-weight fixtures amplify quantization noise.
  const testing::Golden g = testing::ReadGoldens(Austen().dir())[1];
  const size_t vocab = g.vocab, n = g.ids.size();
  const float scale = testing::MaxAbs(g.logits.data(), g.logits.size());
  struct Expect {
    Format format;
    float max_diff;   // × max|logit|
    size_t min_top1;  // positions whose argmax matches the reference
  };
  // f32/bf16 hold the stored bf16 weights exactly; quantized formats only
  // approximately (bounds ~2x what they reach: they catch layout mistakes,
  // not small quality regressions).
  for (const Expect e : {Expect{Format::kF32, 1e-4f, n}, Expect{Format::kBF16, 1e-4f, n},
                         Expect{Format::kInt8, 0.015f, n - 2}, Expect{Format::kSFP8, 0.06f, n - 6},
                         Expect{Format::kQ4, 0.2f, n - 10}}) {
    SCOPED_TRACE(FormatName(e.format));
    LoadOptions lo;
    lo.quant = e.format;
    const Model m = Model::Load(Austen().dir(), lo);
    EXPECT_EQ(m.weights().lm_head.desc.format, e.format);
    EXPECT_EQ(m.weights().layers[0].w_down.desc.format, e.format);
    if (e.format != Format::kBF16) {
      EXPECT_GT(m.converted_bytes(), 0u);
    }
    Session s(m);
    const std::span<const float> l = s.Forward(g.ids, true);
    EXPECT_LE(testing::MaxAbsDiff(l.data(), g.logits.data(), l.size()), e.max_diff * scale + 1e-3f);
    size_t top1 = 0;
    for (size_t p = 0; p < n; ++p) {
      const float* a = l.data() + p * vocab;
      const float* b = g.logits.data() + p * vocab;
      top1 += std::max_element(a, a + vocab) - a == std::max_element(b, b + vocab) - b;
    }
    EXPECT_GE(top1, e.min_top1);
  }
}

}  // namespace
}  // namespace qlm
