// The forward pass gives the same bits whatever the thread count: every
// parallel split (matmul output rows, activation quantization, attention by
// kv-head groups or query chunks) keeps each value's arithmetic unchanged.
// Checked on the shared models for f32, int8 and q4 weights (int8 and q4
// through the int8-activation path), for a batched prefill that takes the
// attention query split and for single-token decode steps.
// Also checks that int8/q4 weights really take the int8-activation path, and
// that it stays close to the f32-activation results.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "core/forward.h"
#include "core/kv_cache.h"
#include "core/qlm.h"
#include "core/thread_pool.h"
#include "golden_util.h"
#include "kernels/registry.h"

namespace qlm {
namespace {

std::vector<int32_t> RandomIds(size_t n, int32_t vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> dist(3, vocab - 1);
  std::vector<int32_t> ids(n);
  for (int32_t& id : ids) id = dist(rng);
  ids[0] = 2;  // BOS
  return ids;
}

// Logits of every prompt position (prefill in batches of 64, so a 100-token
// prompt gives one 64-query batch and one of 36), then of `steps` greedy
// single-token decode steps, concatenated.
std::vector<float> RunSession(const Model& model, size_t threads,
                              const std::vector<int32_t>& prompt, size_t steps) {
  SessionOptions so;
  so.threads = threads;
  so.batch = 64;
  so.context = prompt.size() + steps + 1;
  Session s(model, so);
  const std::span<const float> l = s.Forward(prompt, /*all_logits=*/true);
  std::vector<float> all(l.begin(), l.end());
  const size_t vocab = static_cast<size_t>(model.config().vocab_size);
  std::vector<float> last(all.end() - static_cast<std::ptrdiff_t>(vocab), all.end());
  for (size_t i = 0; i < steps; ++i) {
    const int32_t id =
        static_cast<int32_t>(std::max_element(last.begin(), last.end()) - last.begin());
    const std::span<const float> next = s.Forward(std::span<const int32_t>(&id, 1));
    last.assign(next.begin(), next.end());
    all.insert(all.end(), last.begin(), last.end());
  }
  return all;
}

struct Case {
  std::string model;
  Format format;
  bool int8_acts = false;  // QLM_ACTIVATIONS=int8 (int8 weights too)
};

void PrintTo(const Case& c, std::ostream* os) {
  *os << c.model << " as " << FormatName(c.format) << (c.int8_acts ? ", int8 activations" : "");
}

class ThreadsDeterminism : public ::testing::TestWithParam<Case> {};

TEST_P(ThreadsDeterminism, LogitsAreBitwiseEqualForOneTwoAndThreeThreads) {
  const Case& c = GetParam();
  const std::string dir = testing::SharedPath(c.model);
  ASSERT_TRUE(std::filesystem::exists(dir)) << "missing test data: " << dir;
  LoadOptions lo;
  lo.quant = c.format;
  if (c.int8_acts) setenv("QLM_ACTIVATIONS", "int8", 1);
  const Model model = Model::Load(dir, lo);
  unsetenv("QLM_ACTIVATIONS");
  ASSERT_EQ(model.weights().layers[0].wq.desc.format, c.format);
  const std::vector<int32_t> prompt = RandomIds(100, model.config().vocab_size, 7);
  const std::vector<float> one = RunSession(model, 1, prompt, 6);
  for (const size_t threads : {2, 3}) {
    SCOPED_TRACE(std::to_string(threads) + " threads");
    const std::vector<float> many = RunSession(model, threads, prompt, 6);
    ASSERT_EQ(many.size(), one.size());
    size_t first_diff = one.size();
    for (size_t i = 0; i < one.size(); ++i) {
      if (std::memcmp(&one[i], &many[i], sizeof(float)) != 0) {
        first_diff = i;
        break;
      }
    }
    EXPECT_EQ(first_diff, one.size()) << "logit " << first_diff << " differs: " << one[first_diff]
                                      << " (1 thread) vs " << many[first_diff];
  }
}

INSTANTIATE_TEST_SUITE_P(SharedModels, ThreadsDeterminism,
                         ::testing::Values(Case{"models/austen-gemma3", Format::kF32},
                                           Case{"models/austen-gemma3", Format::kQ4},
                                           Case{"models/austen-gemma3", Format::kInt8},
                                           Case{"models/austen-gemma3", Format::kInt8, true},
                                           Case{"fixtures/tiny-gemma2", Format::kQ4},
                                           Case{"fixtures/tiny-llama", Format::kF32}),
                         [](const auto& info) {
                           std::string s = info.param.model.substr(info.param.model.find('/') + 1) +
                                           "_" + FormatName(info.param.format) +
                                           (info.param.int8_acts ? "_int8acts" : "");
                           for (char& ch : s) {
                             if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           }
                           return s;
                         });

// ForwardBatch with int8_activations on and off, on every kernel table:
// for q4 and int8 weights the results differ (the int8 path is really
// taken) but stay close, and f32 weights are unaffected by the switch.
// Also the default: q4 on int8 activations, int8 weights on f32.
TEST(Int8Activations, QuantizedWeightsUseThemAndStayClose) {
  const std::string dir = testing::SharedPath("models/austen-gemma3");
  ASSERT_TRUE(std::filesystem::exists(dir)) << "missing test data: " << dir;
  for (const Format f : {Format::kQ4, Format::kInt8, Format::kF32}) {
    LoadOptions lo;
    lo.quant = f;
    const Model model = Model::Load(dir, lo);
    const ModelConfig& c = model.config();
    const Transformer& dflt = model.transformer();
    EXPECT_EQ(dflt.int8_activations[static_cast<int>(f)], f == Format::kQ4) << FormatName(f);
    const size_t vocab = static_cast<size_t>(c.vocab_size);
    const std::vector<int32_t> ids = RandomIds(40, c.vocab_size, 11);
    for (const kernels::Isa isa :
         {kernels::Isa::kScalar, kernels::Isa::kAvx2, kernels::Isa::kAvx512, kernels::Isa::kNeon}) {
      if (!kernels::IsaAvailable(isa)) continue;
      SCOPED_TRACE(std::string(FormatName(f)) + " on " + kernels::IsaName(isa));
      auto logits = [&](bool int8_acts) {
        Transformer t = MakeTransformer(c, model.weights(), kernels::GetTable(isa));
        for (bool& on : t.int8_activations) on = int8_acts;
        KvCache kv(c, ids.size());
        ForwardScratch s(c, ids.size());
        ThreadPool pool(2);
        std::vector<float> out(ids.size() * vocab);
        ForwardBatch(t, kv, s, &pool, ids.data(), ids.size(), 0, out.data(), 0);
        return out;
      };
      const std::vector<float> q8 = logits(true), f32 = logits(false);
      const float diff = testing::MaxAbsDiff(q8.data(), f32.data(), q8.size());
      const float scale = testing::MaxAbs(f32.data(), f32.size());
      if (f == Format::kF32) {
        EXPECT_EQ(diff, 0.0f);
      } else {
        EXPECT_GT(diff, 0.0f) << "int8/q4 weights did not take the int8-activation path";
        // Activation rounding (8 bits per 32-block) moves logits by ~1 % of
        // their range on this model; 5 % catches a wrong layout or scale.
        EXPECT_LT(diff, 0.05f * scale);
      }
    }
  }
}

}  // namespace
}  // namespace qlm
