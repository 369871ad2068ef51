// Quantization end to end through the library: --quant at load time, the
// .qlm file through Model::Load, AutoGPTQ checkpoints against their goldens
// on every kernel table, and GPTQ over a whole (tiny) model.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "base/error.h"
#include "core/export_qlm.h"
#include "core/forward.h"
#include "core/gptq_model.h"
#include "core/model.h"
#include "core/model_source.h"
#include "core/qlm.h"
#include "core/thread_pool.h"
#include "golden_util.h"
#include "kernels/registry.h"
#include "quant/quantize.h"

namespace qlm {
namespace {

namespace fs = std::filesystem;
using testing::Golden;
using testing::MaxAbs;
using testing::MaxAbsDiff;
using testing::ReadGoldens;
using testing::SharedPath;

#define QLM_REQUIRE(path)                                          \
  ASSERT_TRUE(fs::exists(path)) << "missing test data: " << (path) \
                                << " (QLM_SHARED_DIR=" << QLM_SHARED_DIR << ")"

std::string TempFile(const std::string& name) {
  static int counter = 0;
  return (fs::temp_directory_path() / ("qlm_qmodel_test_" + std::to_string(::getpid()) + "_" +
                                       std::to_string(counter++) + "_" + name))
      .string();
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<float> AllLogits(const Model& m, const std::vector<int32_t>& ids) {
  SessionOptions so;
  so.context = ids.size();
  Session s(m, so);
  const std::span<const float> l = s.Forward(ids, /*all_logits=*/true);
  return {l.begin(), l.end()};
}

void ExpectMatchesGoldens(const Model& m, const std::string& dir) {
  for (const Golden& g : ReadGoldens(dir)) {
    const std::vector<float> got = AllLogits(m, g.ids);
    ASSERT_EQ(got.size(), g.logits.size()) << g.name;
    const float diff = MaxAbsDiff(got.data(), g.logits.data(), got.size());
    const float tol = 1e-3f + 1e-3f * MaxAbs(g.logits.data(), g.logits.size());
    EXPECT_LE(diff, tol) << g.name << " on " << m.isa();
  }
}

// Writes `dir` as a .qlm file in `format` (the `qlm quantize` path).
std::string ExportTo(const std::string& dir, Format format, uint32_t group = 0) {
  const ModelSource src = OpenModelSource(dir);
  const std::string proto = ReadAll(src.tokenizer_path);
  ExportOptions o;
  o.format = format;
  o.quantize.group_size = group;
  const std::string path = TempFile(std::string(FormatName(format)) + ".qlm");
  ExportQlm(src, proto, path, o);
  return path;
}

TEST(GptqCheckpoint, MatchesGoldensOnEveryKernelTable) {
  const std::string dir = SharedPath("gptq/austen-gemma3-gptq-g128");
  QLM_REQUIRE(dir);
  int ran = 0;
  for (const kernels::Isa isa :
       {kernels::Isa::kScalar, kernels::Isa::kAvx2, kernels::Isa::kAvx512, kernels::Isa::kNeon}) {
    if (!kernels::IsaAvailable(isa)) continue;
    LoadOptions lo;
    lo.kernels = kernels::IsaName(isa);
    // The goldens are computed from the dequantized weights, so the exact
    // check of the repacked layout runs with f32 activations.
    setenv("QLM_ACTIVATIONS", "f32", 1);
    const Model m = Model::Load(dir, lo);
    unsetenv("QLM_ACTIVATIONS");
    // The linears are q4 with the act-order permutation, repacked (not f32).
    const LayerWeights& L = m.weights().layers[0];
    EXPECT_EQ(L.wq.desc.format, Format::kQ4);
    EXPECT_TRUE(L.wq.desc.has_perm);
    EXPECT_EQ(L.w_down.desc.group_size, 128u);
    EXPECT_EQ(m.weights().embed.desc.format, Format::kF32);  // f16 -> f32
    ExpectMatchesGoldens(m, dir);
    // The default int8-activation path (activations rounded to 8 bits per
    // 32-block) moves logits by up to ~0.6 % of max|logit| here; 1.5 % (the
    // int8-weight bound of session_test) still catches a wrong permutation.
    const Model q8 = Model::Load(dir, lo);
    for (const Golden& g : ReadGoldens(dir)) {
      const std::vector<float> got = AllLogits(q8, g.ids);
      ASSERT_EQ(got.size(), g.logits.size()) << g.name;
      const float diff = MaxAbsDiff(got.data(), g.logits.data(), got.size());
      const float tol = 1e-3f + 0.015f * MaxAbs(g.logits.data(), g.logits.size());
      EXPECT_LE(diff, tol) << g.name << " on " << q8.isa() << " with int8 activations";
    }
    ++ran;
  }
  EXPECT_GE(ran, 1);
}

TEST(QuantAtLoad, LinearsAndTiedHeadAreConvertedOnce) {
  const std::string dir = SharedPath("models/austen-gemma3");
  QLM_REQUIRE(dir);
  for (const Format f : {Format::kF32, Format::kBF16, Format::kInt8, Format::kQ4, Format::kSFP8}) {
    LoadOptions lo;
    lo.quant = f;
    lo.threads = 2;
    const Model m = Model::Load(dir, lo);
    const ModelWeights& w = m.weights();
    EXPECT_EQ(w.lm_head.desc.format, f) << FormatName(f);
    EXPECT_EQ(w.embed.data, w.lm_head.data) << "a tied table is stored once";
    for (const LayerWeights& L : w.layers) {
      for (const QTensor* t : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down}) {
        EXPECT_EQ(t->desc.format, f);
      }
      EXPECT_NE(L.attn_norm, nullptr);  // norms stay f32
    }
  }
  LoadOptions g64;
  g64.quant = Format::kQ4;
  g64.group_size = 64;
  EXPECT_EQ(Model::Load(dir, g64).weights().layers[2].wo.desc.group_size, 64u);
  // Parallel conversion gives the same bytes as single-threaded.
  LoadOptions one = g64, two = g64;
  one.threads = 1;
  two.threads = 2;
  const Model a = Model::Load(dir, one), b = Model::Load(dir, two);
  const QTensor& ta = a.weights().embed;
  EXPECT_EQ(std::memcmp(ta.data, b.weights().embed.data, ta.desc.total_bytes), 0);
}

TEST(QlmFileModel, F32FileMatchesGoldensWithNoConversion) {
  const std::string dir = SharedPath("fixtures/tiny-gemma2");
  QLM_REQUIRE(dir);
  const std::string path = ExportTo(dir, Format::kF32);
  const Model m = Model::Load(path);
  EXPECT_EQ(m.converted_bytes(), 0u) << "every tensor, norms included, is used in place";
  EXPECT_EQ(m.mapped_bytes(), fs::file_size(path));
  ExpectMatchesGoldens(m, dir);
  fs::remove(path);
}

TEST(QlmFileModel, QuantizedFileEqualsQuantAtLoad) {
  const std::string dir = SharedPath("fixtures/tiny-llama");  // untied head
  QLM_REQUIRE(dir);
  const Golden g = ReadGoldens(dir).at(0);
  for (const Format f : {Format::kQ4, Format::kInt8, Format::kSFP8}) {
    const std::string path = ExportTo(dir, f, f == Format::kQ4 ? 32 : 0);
    LoadOptions lo;
    lo.quant = f;
    lo.group_size = f == Format::kQ4 ? 32 : 0;
    const Model from_file = Model::Load(path), at_load = Model::Load(dir, lo);
    EXPECT_EQ(from_file.converted_bytes(), 0u);
    EXPECT_EQ(from_file.weights().lm_head.desc.format, f);
    const std::vector<float> a = AllLogits(from_file, g.ids), b = AllLogits(at_load, g.ids);
    EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * 4), 0) << FormatName(f);
    // --quant on a .qlm converts its tensors again (from their decoded values).
    LoadOptions to_f32;
    to_f32.quant = Format::kF32;
    const Model dequantized = Model::Load(path, to_f32);
    EXPECT_EQ(dequantized.weights().layers[0].wq.desc.format, Format::kF32);
    fs::remove(path);
  }
}

// LoadOptions::mmap: the default reads the weight files into memory, true
// (--mmap) maps them; the logits are bitwise the same, for an HF directory
// and a .qlm file. Reading reports each file's progress up to its size;
// mapping reads nothing.
TEST(Residency, ReadAndMappedLoadsGiveBitwiseTheSameLogits) {
  const std::string dir = SharedPath("fixtures/tiny-gemma2");
  QLM_REQUIRE(dir);
  const Golden g = ReadGoldens(dir).at(0);
  const std::string path = ExportTo(dir, Format::kQ4, 32);
  for (const std::string& source : {dir, path}) {
    std::map<std::string, std::pair<size_t, size_t>> last;  // path -> (done, total)
    size_t calls = 0;
    LoadOptions read, map;
    read.read_progress =
        map.read_progress = [&](size_t done, size_t total, const std::string& file) {
          auto& [d, t] = last[file];
          EXPECT_GT(done, d) << file;  // strictly increasing
          d = done;
          t = total;
          ++calls;
        };
    map.mmap = true;
    const Model mapped = Model::Load(source, map);
    EXPECT_EQ(calls, 0u) << source;
    const Model copied = Model::Load(source, read);
    EXPECT_EQ(copied.mapped_bytes(), mapped.mapped_bytes()) << source;
    EXPECT_EQ(copied.read_bytes(), copied.mapped_bytes()) << source;
    EXPECT_EQ(mapped.read_bytes(), 0u) << source;
    ASSERT_FALSE(last.empty()) << source;
    size_t files_bytes = 0;
    for (const auto& [file, dt] : last) {
      EXPECT_EQ(dt.first, dt.second) << file;
      EXPECT_EQ(dt.second, fs::file_size(file)) << file;
      files_bytes += dt.second;
    }
    EXPECT_EQ(files_bytes, copied.mapped_bytes()) << source;
    const std::vector<float> a = AllLogits(mapped, g.ids), b = AllLogits(copied, g.ids);
    ASSERT_EQ(a.size(), b.size());
    EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * 4), 0) << source;
  }
  fs::remove(path);
}

TEST(QlmFileModel, ErrorsNameTheFile) {
  const std::string dir = SharedPath("fixtures/tiny-llama");
  QLM_REQUIRE(dir);
  const std::string path = ExportTo(dir, Format::kBF16);
  std::string bytes = ReadAll(path);
  bytes[bytes.size() / 2] ^= 1;  // a tensor byte
  const std::string bad = path + ".bad.qlm";
  std::ofstream(bad, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size()));
  EXPECT_NO_THROW(Model::Load(bad));  // per-tensor checksums are opt-in
  LoadOptions verify;
  verify.verify_checksums = true;
  try {
    Model::Load(bad, verify);
    ADD_FAILURE() << "expected a checksum error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("checksum mismatch"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
  }
  std::ofstream(bad, std::ios::binary).write(bytes.data(), 1000);  // truncated
  EXPECT_THROW(Model::Load(bad), Error);
  std::ofstream(bad, std::ios::binary) << "not a model";
  EXPECT_THROW(Model::Load(bad), Error);
  fs::remove(path);
  fs::remove(bad);
}

// Σ (logits − reference)² over the positions of `windows` for `w`.
double LogitError(const ModelConfig& c, const ModelWeights& w, const ModelWeights& ref,
                  const std::vector<std::vector<int32_t>>& windows) {
  const kernels::KernelTable& table = kernels::SelectTable();
  const Transformer tw = MakeTransformer(c, w, table), tr = MakeTransformer(c, ref, table);
  const size_t n = windows[0].size(), vocab = static_cast<size_t>(c.vocab_size);
  KvCache kv(c, n);
  ForwardScratch s(c, n);
  std::vector<float> a(n * vocab), b(n * vocab);
  double err = 0;
  for (const auto& win : windows) {
    kv.Clear();
    ForwardBatch(tw, kv, s, nullptr, win.data(), n, 0, a.data(), 0);
    kv.Clear();
    ForwardBatch(tr, kv, s, nullptr, win.data(), n, 0, b.data(), 0);
    for (size_t i = 0; i < a.size(); ++i) err += double(a[i] - b[i]) * (a[i] - b[i]);
  }
  return err;
}

// GPTQ over the whole model (every layer linear and the head) must give
// logits closer to the f32 model's than round-to-nearest at the same q4
// group size, on held-out text.
void ExpectGptqBeatsRtn(const std::string& dir, size_t sequences, size_t tokens, uint32_t group,
                        double max_ratio) {
  const std::string train = SharedPath("corpus/train.txt"), valid = SharedPath("corpus/valid.txt");
  QLM_REQUIRE(dir);
  QLM_REQUIRE(train);
  QLM_REQUIRE(valid);
  LoadOptions lo;
  lo.quant = Format::kF32;
  const Model m = Model::Load(dir, lo);
  const ModelConfig& c = m.config();
  CalibrationOptions co;
  co.sequences = sequences;
  co.tokens = tokens;
  const auto calib = SampleCalibrationWindows(m.tokenizer(), ReadAll(train).substr(0, 200000), co);
  ASSERT_EQ(calib.size(), sequences);
  ASSERT_EQ(calib[0].size(), tokens);
  EXPECT_EQ(calib[0][0], m.tokenizer().bos_id());
  ThreadPool pool(2);
  GptqOptions go;
  go.group_size = group;
  size_t reports = 0;
  std::map<std::string, QuantizedTensor> q =
      GptqQuantizeModel(c, m.weights(), kernels::SelectTable(), calib, go, /*head=*/true, &pool,
                        [&](const GptqProgressInfo& p) { EXPECT_EQ(p.done, ++reports); });
  EXPECT_EQ(q.size(), size_t(c.num_layers) * kLinearsPerLayer + 1);
  EXPECT_EQ(reports, q.size());
  const std::string head = c.tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight";
  ASSERT_EQ(q.count(head), 1u);

  // The GPTQ model and a round-to-nearest model, same format and groups.
  ModelWeights wg = m.weights(), wr = m.weights();
  std::vector<QuantizedTensor> rtn;
  QuantizeOptions qo;
  qo.group_size = group;
  std::vector<float> f;
  const auto requantize = [&](QTensor& t) {
    f.resize(t.desc.rows * t.desc.cols);
    for (uint64_t r = 0; r < t.desc.rows; ++r) DequantizeRow(t, r, f.data() + r * t.desc.cols);
    rtn.push_back(Quantize(Format::kQ4, f.data(), t.desc.rows, t.desc.cols, qo));
    t = rtn.back().view();
  };
  for (size_t l = 0; l < wg.layers.size(); ++l) {
    LayerWeights &G = wg.layers[l], &R = wr.layers[l];
    QTensor* gs[] = {&G.wq, &G.wk, &G.wv, &G.wo, &G.w_gate, &G.w_up, &G.w_down};
    QTensor* rs[] = {&R.wq, &R.wk, &R.wv, &R.wo, &R.w_gate, &R.w_up, &R.w_down};
    for (int s = 0; s < kLinearsPerLayer; ++s) {
      *gs[s] = q.at(LayerLinearName(l, s)).view();
      requantize(*rs[s]);
    }
  }
  wg.lm_head = q.at(head).view();
  requantize(wr.lm_head);
  if (c.tie_word_embeddings) {
    wg.embed = wg.lm_head;
    wr.embed = wr.lm_head;
  }
  co.seed = 99;
  const auto eval = SampleCalibrationWindows(m.tokenizer(), ReadAll(valid).substr(0, 100000), co);
  const std::vector<std::vector<int32_t>> held_out(eval.begin(), eval.begin() + 4);
  const double e_gptq = LogitError(c, wg, m.weights(), held_out);
  const double e_rtn = LogitError(c, wr, m.weights(), held_out);
  EXPECT_LT(e_gptq, max_ratio * e_rtn) << dir << ": GPTQ " << e_gptq << " vs RTN " << e_rtn;
}

// A random-weight fixture: activations have little structure, so GPTQ gains
// less than on a trained model (measured: 0.85 of RTN's error).
TEST(GptqModel, TinyFixtureLowerLogitErrorThanRtn) {
  ExpectGptqBeatsRtn(SharedPath("fixtures/tiny-llama"), 32, 64, 32, 0.92);
}

// The trained Austen model (tied head), a short calibration.
TEST(GptqModel, AustenLowerLogitErrorThanRtn) {
  ExpectGptqBeatsRtn(SharedPath("models/austen-gemma3"), 16, 128, 128, 0.6);
}

}  // namespace
}  // namespace qlm
