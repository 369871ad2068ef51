// AutoGPTQ import: repacking GPTQ linears into q4 without dequantizing.
// The reference everywhere is the GPTQ formula computed straight from the
// stored tensors: w[n][k] = scale[g_idx[k]][n] · (q[k][n] − z[g_idx[k]][n]).
#include "loaders/gptq.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "base/error.h"
#include "loaders/model_config.h"
#include "quant/half.h"
#include "quant/quantize.h"
#include "tests/loaders/shared_data.h"

namespace qlm {
namespace {

// Expects `fn` to throw qlm::Error whose message contains `needle`.
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

int32_t I32At(const StoredTensor& t, uint64_t i) {
  int32_t v;
  std::memcpy(&v, t.data + 4 * i, 4);
  return v;
}

uint16_t U16At(const StoredTensor& t, uint64_t i) {
  uint16_t v;
  std::memcpy(&v, t.data + 2 * i, 2);
  return v;
}

// The GPTQ formula for output n, original input k.
float GptqWeight(const GptqLinear& in, bool v2, uint64_t N, uint32_t group, uint64_t n,
                 uint64_t k) {
  const uint64_t g = in.g_idx ? static_cast<uint64_t>(I32At(*in.g_idx, k)) : k / group;
  const auto qword = static_cast<uint32_t>(I32At(*in.qweight, (k / 8) * N + n));
  const int q = static_cast<int>((qword >> (4 * (k % 8))) & 15u);
  const auto zword = static_cast<uint32_t>(I32At(*in.qzeros, g * (N / 8) + n / 8));
  const int z = static_cast<int>((zword >> (4 * (n % 8))) & 15u) + (v2 ? 0 : 1);
  return static_cast<float>(q - z) * F16ToF32(U16At(*in.scales, g * N + n));
}

// Checks DequantizeRow(repacked) == the formula, bit for bit, for every weight.
void ExpectRepackExact(const GptqLinear& in, const GptqConfig& cfg, uint64_t N, uint64_t K) {
  const QuantizedTensor t = RepackGptqLinear(in, cfg, N, K);
  ASSERT_EQ(t.desc.format, Format::kQ4);
  ASSERT_EQ(t.desc.rows, N);
  ASSERT_EQ(t.desc.cols, K);
  ASSERT_EQ(t.desc.group_size, cfg.group_size);
  std::vector<float> row(K);
  uint64_t mismatches = 0;
  for (uint64_t n = 0; n < N; ++n) {
    DequantizeRow(t.view(), n, row.data());
    for (uint64_t k = 0; k < K; ++k) {
      const float want = GptqWeight(in, cfg.v2, N, cfg.group_size, n, k);
      if (std::memcmp(&row[k], &want, 4) != 0 && mismatches++ < 5) {
        ADD_FAILURE() << in.name << " n=" << n << " k=" << k << ": got " << row[k] << ", want "
                      << want;
      }
    }
  }
  EXPECT_EQ(mismatches, 0u) << in.name;
  // Every zero point is a q4 zero point.
  const QTensor v = t.view();
  for (uint64_t i = 0; i < N * t.desc.groups_per_row; ++i) ASSERT_LE(v.zeros[i], 15) << in.name;
}

TEST(GptqSharedCheckpoint, EveryLinearRepacksExactly) {
  QLM_SHARED_PATH(dir, "gptq/austen-gemma3-gptq-g128");
  const ModelConfig c = ReadHfConfig(dir + "/config.json");
  const std::optional<GptqConfig> cfg = ReadGptqConfig(dir);
  ASSERT_TRUE(cfg.has_value());
  EXPECT_EQ(cfg->group_size, 128u);
  EXPECT_TRUE(cfg->sym);
  EXPECT_TRUE(cfg->desc_act);
  EXPECT_FALSE(cfg->v2);
  const WeightStore store = WeightStore::OpenHfDir(dir);

  const uint64_t d = c.hidden_size, ff = c.intermediate_size;
  const uint64_t q_dim = uint64_t(c.num_heads) * c.head_dim;
  const uint64_t kv_dim = uint64_t(c.num_kv_heads) * c.head_dim;
  struct Shape {
    const char* name;
    uint64_t n, k;
  };
  const Shape shapes[] = {{"self_attn.q_proj", q_dim, d},  {"self_attn.k_proj", kv_dim, d},
                          {"self_attn.v_proj", kv_dim, d}, {"self_attn.o_proj", d, q_dim},
                          {"mlp.gate_proj", ff, d},        {"mlp.up_proj", ff, d},
                          {"mlp.down_proj", d, ff}};
  int repacked = 0, permuted = 0;
  for (int l = 0; l < c.num_layers; ++l) {
    for (const Shape& s : shapes) {
      const std::string prefix = "model.layers." + std::to_string(l) + "." + s.name;
      const GptqLinear in = FindGptqLinear(store, prefix);
      ASSERT_NE(in.g_idx, nullptr) << prefix;
      ExpectRepackExact(in, *cfg, s.n, s.k);
      permuted += PlanGptqRepack(in, *cfg, s.n, s.k).desc.has_perm ? 1 : 0;
      ++repacked;
    }
  }
  // Every .qweight in the checkpoint was covered.
  int qweights = 0;
  for (const auto& [name, t] : store.tensors()) {
    qweights += name.size() > 8 && name.ends_with(".qweight") ? 1 : 0;
  }
  EXPECT_EQ(repacked, qweights);
  EXPECT_EQ(permuted, repacked) << "the checkpoint simulates act-order in every layer";
}

TEST(GptqSharedCheckpoint, ShapesAreCheckedAgainstConfig) {
  QLM_SHARED_PATH(dir, "gptq/austen-gemma3-gptq-g128");
  const WeightStore store = WeightStore::OpenHfDir(dir);
  const GptqLinear in = FindGptqLinear(store, "model.layers.0.self_attn.q_proj");
  const GptqConfig cfg = *ReadGptqConfig(dir);
  ExpectError([&] { PlanGptqRepack(in, cfg, 256, 512); }, "expected [64, 256]");
  ExpectError([&] { PlanGptqRepack(in, cfg, 128, 256); }, "q_proj.qweight has shape [32, 256]");
  GptqConfig g64 = cfg;
  g64.group_size = 64;
  ExpectError([&] { PlanGptqRepack(in, g64, 256, 256); }, "q_proj.qzeros has shape [2, 32]");
  ExpectError([&] { FindGptqLinear(store, "model.layers.0.self_attn.nope"); },
              "missing GPTQ tensor model.layers.0.self_attn.nope.qweight");
}

// A synthetic GPTQ linear held in vectors.
struct Synthetic {
  uint64_t N, K;
  uint32_t G;
  std::vector<int32_t> qweight, qzeros, g_idx;
  std::vector<uint16_t> scales;
  StoredTensor tq, tz, ts, tg;

  // Random codes, zero points (all of 0..15 occur) and scales; g_idx a
  // random shuffle of the balanced assignment k / G.
  Synthetic(uint64_t n, uint64_t k, uint32_t g, uint32_t seed) : N(n), K(k), G(g) {
    std::mt19937 rng(seed);
    const uint64_t groups = (K + G - 1) / G;
    qweight.assign(K / 8 * N, 0);
    for (auto& w : qweight) w = static_cast<int32_t>(rng());
    qzeros.assign(groups * N / 8, 0);
    for (auto& w : qzeros) w = static_cast<int32_t>(rng());
    scales.resize(groups * N);
    std::uniform_real_distribution<float> u(1e-3f, 0.1f);
    for (auto& s : scales) s = F32ToF16(u(rng));
    g_idx.resize(K);
    for (uint64_t i = 0; i < K; ++i) g_idx[i] = static_cast<int32_t>(i / G);
    std::shuffle(g_idx.begin(), g_idx.end(), rng);
    Bind();
  }
  void Bind() {
    const auto groups = static_cast<int64_t>((K + G - 1) / G);
    tq = {"syn.qweight",
          DType::kI32,
          {int64_t(K / 8), int64_t(N)},
          reinterpret_cast<const uint8_t*>(qweight.data()),
          qweight.size() * 4};
    tz = {"syn.qzeros",
          DType::kI32,
          {groups, int64_t(N / 8)},
          reinterpret_cast<const uint8_t*>(qzeros.data()),
          qzeros.size() * 4};
    ts = {"syn.scales",
          DType::kF16,
          {groups, int64_t(N)},
          reinterpret_cast<const uint8_t*>(scales.data()),
          scales.size() * 2};
    tg = {"syn.g_idx",
          DType::kI32,
          {int64_t(K)},
          reinterpret_cast<const uint8_t*>(g_idx.data()),
          g_idx.size() * 4};
  }
  GptqLinear Linear(bool with_g_idx = true) const {
    return {"syn", &tq, &tz, &ts, with_g_idx ? &tg : nullptr};
  }
  // checkpoint_format "gptq" stores z − 1: keep every z within 1..15.
  void LimitZerosForV1() {
    for (uint64_t g = 0; g < (K + G - 1) / G; ++g) {
      for (uint64_t n = 0; n < N; ++n) {
        const auto w = static_cast<uint32_t>(qzeros[g * (N / 8) + n / 8]);
        if (((w >> (4 * (n % 8))) & 15u) == 15u) SetZero(g, n, 14);
      }
    }
  }
  void SetZero(uint64_t g, uint64_t n, uint32_t nibble) {
    auto w = static_cast<uint32_t>(qzeros[g * (N / 8) + n / 8]);
    w = (w & ~(15u << (4 * (n % 8)))) | (nibble << (4 * (n % 8)));
    qzeros[g * (N / 8) + n / 8] = static_cast<int32_t>(w);
  }
  void SetCode(uint64_t k, uint64_t n, uint32_t q) {
    auto w = static_cast<uint32_t>(qweight[(k / 8) * N + n]);
    w = (w & ~(15u << (4 * (k % 8)))) | (q << (4 * (k % 8)));
    qweight[(k / 8) * N + n] = static_cast<int32_t>(w);
  }
};

TEST(GptqSynthetic, V2AsymmetricWithActOrderIsExact) {
  // K = 136 is not a multiple of 64: qlm pads to 192, and with group 32 the
  // last qlm group lies entirely in padding; the last GPTQ group has 8 inputs.
  for (const uint32_t g : {32u, 64u, 128u}) {
    Synthetic s(24, 136, g, 7 + g);
    GptqConfig cfg;
    cfg.group_size = g;
    cfg.sym = false;
    cfg.desc_act = true;
    cfg.v2 = true;
    ExpectRepackExact(s.Linear(), cfg, s.N, s.K);
    const QuantizedTensor t = RepackGptqLinear(s.Linear(), cfg, s.N, s.K);
    EXPECT_TRUE(t.desc.has_perm);
    // Padding decodes to exactly 0 (stored order, past cols).
    const QTensor v = t.view();
    for (uint64_t n = 0; n < s.N; ++n) {
      const uint8_t* row = v.data + n * t.desc.row_bytes;
      for (uint64_t j = s.K; j < t.desc.padded_cols; ++j) {
        const uint64_t k = j % 64;
        const uint8_t byte = row[(j - k) / 2 + k % 32];
        const int q = k < 32 ? (byte & 15) : (byte >> 4);
        EXPECT_EQ(q, v.zeros[n * t.desc.groups_per_row + j / g]) << "n=" << n << " j=" << j;
      }
    }
  }
}

TEST(GptqSynthetic, WithoutGIdxNoPermutationIsStored) {
  Synthetic s(16, 256, 64, 3);
  GptqConfig cfg;
  cfg.group_size = 64;
  cfg.v2 = true;
  ExpectRepackExact(s.Linear(false), cfg, s.N, s.K);
  EXPECT_FALSE(RepackGptqLinear(s.Linear(false), cfg, s.N, s.K).desc.has_perm);
  // A g_idx equal to k / G is the identity too.
  for (uint64_t k = 0; k < s.K; ++k) s.g_idx[k] = static_cast<int32_t>(k / 64);
  EXPECT_FALSE(RepackGptqLinear(s.Linear(), cfg, s.N, s.K).desc.has_perm);
}

TEST(GptqSynthetic, V1ZeroPointSixteen) {
  Synthetic s(16, 128, 32, 11);
  GptqConfig cfg;
  cfg.group_size = 32;
  cfg.v2 = false;
  s.LimitZerosForV1();
  ExpectRepackExact(s.Linear(), cfg, s.N, s.K);
  // Zero point 16 (stored 15) for group 2, output 5: make its codes >= 1.
  s.SetZero(2, 5, 15);
  for (uint64_t k = 0; k < s.K; ++k) {
    if (s.g_idx[k] == 2) s.SetCode(k, 5, 1 + static_cast<uint32_t>(k % 15));
  }
  ExpectRepackExact(s.Linear(), cfg, s.N, s.K);
  // A code 0 in such a group cannot be represented.
  for (uint64_t k = 0; k < s.K; ++k) {
    if (s.g_idx[k] == 2) {
      s.SetCode(k, 5, 0);
      break;
    }
  }
  ExpectError([&] { RepackGptqLinear(s.Linear(), cfg, s.N, s.K); }, "zero point 16");
}

TEST(GptqSynthetic, RowRangesAreIndependent) {
  Synthetic s(40, 192, 64, 5);
  s.LimitZerosForV1();
  GptqConfig cfg;
  cfg.group_size = 64;
  const GptqRepackPlan plan = PlanGptqRepack(s.Linear(), cfg, s.N, s.K);
  QuantizedTensor a = AllocateGptqRepacked(plan), b = AllocateGptqRepacked(plan);
  RepackGptqRows(plan, 0, s.N, a);
  RepackGptqRows(plan, 17, s.N, b);
  RepackGptqRows(plan, 0, 17, b);
  ASSERT_EQ(a.desc.total_bytes, b.desc.total_bytes);
  EXPECT_EQ(std::memcmp(a.blob.data(), b.blob.data(), a.desc.total_bytes), 0);
  ExpectError([&] { RepackGptqRows(plan, 5, 41, a); }, "row range");
}

TEST(GptqMalformed, BadTensorsAreClearErrors) {
  GptqConfig cfg;
  cfg.group_size = 32;
  cfg.v2 = true;
  {
    Synthetic s(16, 64, 32, 1);
    s.tq.dtype = DType::kF16;
    ExpectError([&] { PlanGptqRepack(s.Linear(), cfg, 16, 64); }, "syn.qweight has dtype F16");
  }
  {
    Synthetic s(16, 64, 32, 1);
    s.ts.dtype = DType::kF32;
    ExpectError([&] { PlanGptqRepack(s.Linear(), cfg, 16, 64); }, "syn.scales has dtype F32");
  }
  {
    Synthetic s(16, 64, 32, 1);
    s.tg.shape = {63};
    ExpectError([&] { PlanGptqRepack(s.Linear(), cfg, 16, 64); }, "syn.g_idx has shape [63]");
  }
  {
    Synthetic s(16, 64, 32, 1);
    ExpectError([&] { PlanGptqRepack(s.Linear(), cfg, 12, 64); }, "multiples of 8");
    ExpectError([&] { PlanGptqRepack(s.Linear(), cfg, 16, 0); }, "multiples of 8");
  }
  {
    Synthetic s(16, 64, 32, 1);
    s.g_idx[10] = 2;  // only groups 0 and 1 exist
    ExpectError([&] { PlanGptqRepack(s.Linear(), cfg, 16, 64); }, "entry 10 = 2 is outside 0..1");
    s.g_idx[10] = -1;
    ExpectError([&] { PlanGptqRepack(s.Linear(), cfg, 16, 64); }, "entry 10 = -1");
  }
  {
    Synthetic s(16, 64, 32, 1);
    // Move one input from its group to the other: 31 and 33 members.
    const int32_t from = s.g_idx[0];
    s.g_idx[0] = 1 - from;
    ExpectError([&] { PlanGptqRepack(s.Linear(), cfg, 16, 64); }, "inputs, expected 32");
  }
  {
    Synthetic s(16, 64, 32, 1);
    s.scales[7] = 0x7c00;  // +Inf
    ExpectError([&] { RepackGptqLinear(s.Linear(), cfg, 16, 64); }, "is not finite");
    s.scales[7] = 0x7e00;  // NaN
    ExpectError([&] { RepackGptqLinear(s.Linear(), cfg, 16, 64); }, "is not finite");
  }
  {
    Synthetic s(16, 64, 32, 1);
    GptqLinear in = s.Linear();
    in.qzeros = nullptr;
    ExpectError([&] { PlanGptqRepack(in, cfg, 16, 64); }, "are all required");
    GptqConfig bad = cfg;
    bad.group_size = 16;
    ExpectError([&] { PlanGptqRepack(s.Linear(), bad, 16, 64); }, "group size 16");
  }
}

TEST(GptqConfigParse, SettingsAndErrors) {
  const auto parse = [](const std::string& qc) {
    return ParseGptqConfig(R"({"model_type": "llama", "quantization_config": )" + qc + "}", "",
                           "DIR");
  };
  EXPECT_FALSE(ParseGptqConfig(R"({"model_type": "llama"})", "", "DIR").has_value());
  const auto c = parse(
      R"({"quant_method": "gptq", "bits": 4, "group_size": 64, "sym": false, "desc_act": true,
          "checkpoint_format": "gptq_v2"})");
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->group_size, 64u);
  EXPECT_FALSE(c->sym);
  EXPECT_TRUE(c->desc_act);
  EXPECT_TRUE(c->v2);
  // Defaults: checkpoint_format gptq, sym, no act-order.
  const auto d = parse(R"({"quant_method": "gptq", "bits": 4, "group_size": 32})");
  EXPECT_FALSE(d->v2);
  EXPECT_TRUE(d->sym);
  EXPECT_FALSE(d->desc_act);
  // Older AutoGPTQ: only quantize_config.json, without quant_method.
  const auto e = ParseGptqConfig(R"({"model_type": "llama"})",
                                 R"({"bits": 4, "group_size": 128, "desc_act": false})", "DIR");
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->group_size, 128u);

  ExpectError([&] { parse(R"({"quant_method": "awq", "bits": 4, "group_size": 128})"); },
              "quantization method \"awq\" is not supported");
  ExpectError([&] { parse(R"({"quant_method": "gptq", "bits": 8, "group_size": 128})"); },
              "\"bits\" is 8");
  ExpectError([&] { parse(R"({"quant_method": "gptq", "bits": 4, "group_size": -1})"); },
              "\"group_size\" is -1 (one group per row)");
  ExpectError([&] { parse(R"({"quant_method": "gptq", "bits": 4, "group_size": 256})"); },
              "\"group_size\" is 256");
  ExpectError([&] { parse(R"({"quant_method": "gptq", "bits": 4})"); }, "\"group_size\"");
  ExpectError(
      [&] {
        parse(R"({"quant_method": "gptq", "bits": 4, "group_size": 128,
                  "checkpoint_format": "marlin"})");
      },
      "\"checkpoint_format\" \"marlin\"");
  ExpectError([&] { parse(R"({"quant_method": "gptq", "bits": "4", "group_size": 128})"); },
              "\"bits\" must be an integer");
  ExpectError([&] { ParseGptqConfig("{not json", "", "DIR"); }, "DIR/config.json: not valid JSON");
}

}  // namespace
}  // namespace qlm
