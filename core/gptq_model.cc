#include "core/gptq_model.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <random>

#include "base/error.h"
#include "core/forward.h"
#include "core/kv_cache.h"
#include "core/thread_pool.h"
#include "quant/quantize.h"

namespace qlm {
namespace {

// Collects H for the linear inputs of one layer and stops the pass after it.
class HessianObserver : public ForwardObserver {
 public:
  HessianObserver(const ModelConfig& c, size_t layer, const kernels::KernelTable& table,
                  ThreadPool* pool)
      : layer_(layer), table_(table), pool_(pool) {
    last_layer = layer;
    const size_t d = c.hidden_size, q_dim = size_t(c.num_heads) * c.head_dim;
    acc_.emplace_back(d);                    // attention input (q, k, v)
    acc_.emplace_back(q_dim);                // o_proj input
    acc_.emplace_back(d);                    // MLP input (gate, up)
    acc_.emplace_back(c.intermediate_size);  // down_proj input
  }
  void OnLinearInput(size_t layer, LinearInput which, const float* x, size_t rows,
                     size_t cols) override {
    if (layer != layer_) return;
    HessianAccumulator& a = acc_[static_cast<size_t>(which)];
    if (cols != a.k()) throw Error("GPTQ: unexpected linear input width");
    a.Add(x, rows, table_, pool_);
  }
  const HessianAccumulator& acc(LinearInput which) const {
    return acc_[static_cast<size_t>(which)];
  }

 private:
  size_t layer_;
  const kernels::KernelTable& table_;
  ThreadPool* pool_;
  std::vector<HessianAccumulator> acc_;
};

// Collects H of the output head's input.
class HeadObserver : public ForwardObserver {
 public:
  HeadObserver(size_t d, const kernels::KernelTable& table, ThreadPool* pool)
      : acc(d), table_(table), pool_(pool) {}
  void OnLinearInput(size_t, LinearInput which, const float* x, size_t rows, size_t) override {
    if (which == LinearInput::kHead) acc.Add(x, rows, table_, pool_);
  }
  HessianAccumulator acc;

 private:
  const kernels::KernelTable& table_;
  ThreadPool* pool_;
};

QTensor& Slot(LayerWeights& L, int slot) {
  QTensor* slots[kLinearsPerLayer] = {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down};
  return *slots[slot];
}

LinearInput InputOf(int slot) {
  static constexpr LinearInput kInputs[kLinearsPerLayer] = {
      LinearInput::kAttention,    LinearInput::kAttention, LinearInput::kAttention,
      LinearInput::kAttentionOut, LinearInput::kMlp,       LinearInput::kMlp,
      LinearInput::kMlpDown};
  return kInputs[slot];
}

}  // namespace

std::string LayerLinearName(size_t layer, int slot) {
  static constexpr const char* kNames[kLinearsPerLayer] = {
      "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
      "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};
  return "model.layers." + std::to_string(layer) + "." + kNames[slot] + ".weight";
}

std::vector<std::vector<int32_t>> SampleCalibrationWindows(const Tokenizer& tokenizer,
                                                           std::string_view text,
                                                           const CalibrationOptions& o) {
  if (o.sequences == 0 || o.tokens < 2) {
    throw UsageError("calibration needs at least one window of at least 2 tokens");
  }
  const std::vector<int> ids = tokenizer.Encode(text, /*add_bos=*/false);
  const size_t body = o.tokens - 1;  // BOS + body
  if (ids.size() < body) {
    throw UsageError("the calibration text has " + std::to_string(ids.size()) +
                     " tokens, fewer than one window of " + std::to_string(o.tokens));
  }
  std::mt19937_64 rng(o.seed);
  std::uniform_int_distribution<size_t> start(0, ids.size() - body);
  std::vector<std::vector<int32_t>> windows(o.sequences);
  const int bos = tokenizer.bos_id();
  for (auto& w : windows) {
    const size_t s = start(rng);
    if (bos >= 0) w.push_back(bos);
    for (size_t i = 0; i < body; ++i) w.push_back(ids[s + i]);
  }
  return windows;
}

std::map<std::string, QuantizedTensor> GptqQuantizeModel(
    const ModelConfig& c, const ModelWeights& weights, const kernels::KernelTable& table,
    const std::vector<std::vector<int32_t>>& windows, const GptqOptions& options, bool head,
    ThreadPool* pool, const GptqProgress& progress) {
  if (windows.empty()) throw UsageError("GPTQ needs calibration windows");
  size_t longest = 0;
  for (const auto& w : windows) longest = std::max(longest, w.size());
  const auto t0 = std::chrono::steady_clock::now();
  ModelWeights w = weights;  // views; quantized layers are swapped in here
  Transformer m = MakeTransformer(c, w, table);
  KvCache kv(c, longest);
  const size_t batch = std::min<size_t>(longest, 256);
  ForwardScratch scratch(c, batch);
  std::map<std::string, QuantizedTensor> out;
  const size_t total = w.layers.size() * kLinearsPerLayer + (head ? 1 : 0);
  std::vector<float> wf;
  size_t done = 0;
  const auto report = [&](const std::string& name, const GptqStats& st) {
    ++done;
    if (!progress) return;
    GptqProgressInfo info;
    info.tensor = name;
    info.done = done;
    info.total = total;
    info.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    info.stats = st;
    progress(info);
  };
  for (size_t l = 0; l < w.layers.size(); ++l) {
    HessianObserver obs(c, l, table, pool);
    m.observer = &obs;
    for (const auto& win : windows) {
      kv.Clear();
      for (size_t p = 0; p < win.size(); p += batch) {
        const size_t n = std::min(batch, win.size() - p);
        ForwardBatch(m, kv, scratch, pool, win.data() + p, n, static_cast<int32_t>(p), nullptr, n);
      }
    }
    m.observer = nullptr;
    std::vector<float> h[4];
    for (int slot = 0; slot < kLinearsPerLayer; ++slot) {
      const LinearInput in = InputOf(slot);
      std::vector<float>& H = h[static_cast<int>(in)];
      if (H.empty()) H = obs.acc(in).Hessian();
      QTensor& t = Slot(w.layers[l], slot);
      const size_t rows = t.desc.rows, cols = t.desc.cols;
      wf.resize(rows * cols);
      for (size_t r = 0; r < rows; ++r) DequantizeRow(t, r, wf.data() + r * cols);
      GptqStats st;
      QuantizedTensor q = GptqQuantize(wf.data(), rows, cols, H.data(), options, pool, &st);
      t = q.view();  // later layers' calibration sees the quantized layer
      const std::string name = LayerLinearName(l, slot);
      out.emplace(name, std::move(q));
      report(name, st);
    }
  }
  if (head) {
    // The head's input over the fully quantized layers: a full pass that
    // computes the logits (into a scratch buffer) so final_norm(x) is seen.
    HeadObserver obs(c.hidden_size, table, pool);
    m.observer = &obs;
    std::vector<float> logits(batch * static_cast<size_t>(c.vocab_size));
    for (const auto& win : windows) {
      kv.Clear();
      for (size_t p = 0; p < win.size(); p += batch) {
        const size_t n = std::min(batch, win.size() - p);
        ForwardBatch(m, kv, scratch, pool, win.data() + p, n, static_cast<int32_t>(p),
                     logits.data(), 0);
      }
    }
    m.observer = nullptr;
    const std::vector<float> H = obs.acc.Hessian();
    const QTensor& t = w.lm_head;
    const size_t rows = t.desc.rows, cols = t.desc.cols;
    wf.resize(rows * cols);
    for (size_t r = 0; r < rows; ++r) DequantizeRow(t, r, wf.data() + r * cols);
    GptqStats st;
    QuantizedTensor q = GptqQuantize(wf.data(), rows, cols, H.data(), options, pool, &st);
    const std::string name = c.tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight";
    out.emplace(name, std::move(q));
    report(name, st);
  }
  return out;
}

}  // namespace qlm
