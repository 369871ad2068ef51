// The transformer block, following Hugging Face's modeling code:
//
//   x = embed(token) · embed_scale                  (gemma family: √hidden)
//   for each layer:
//     h = attn_norm(x)                              input_layernorm
//     q, k, v = h·Wq, h·Wk, h·Wv
//     q, k = q_norm(q), k_norm(k)                   gemma3 only, per head, before RoPE
//     q, k = rope(q), rope(k)                       gemma3 sliding layers: local base
//     a = attention(q, cache + k, v) · Wo           scale, soft-cap, sliding window
//     a = attn_post_norm(a)                         gemma2/3 only
//     x = x + a
//     h = ffn_norm(x)                               llama/gemma: post_attention_layernorm
//     f = (act(h·Wgate) ⊙ h·Wup) · Wdown            act: SiLU (llama) / GELU-tanh (gemma)
//     f = ffn_post_norm(f)                          gemma2/3 only
//     x = x + f
//   logits = final_norm(x) · Wheadᵀ, soft-capped     gemma2 (final_logit_softcapping)
//
// RMSNorm multiplies by (1 + w) in the gemma family, by w in llama.
#include "core/forward.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/thread_pool.h"
#include "quant/quantize.h"

namespace qlm {
namespace {

// Output rows per thread-pool range: keeps each thread's slice of y on whole
// cache lines and gives SIMD kernels full row tiles.
constexpr size_t kRowGrain = 16;
// Below this many multiply-adds an op runs on the calling thread alone: waking
// the pool costs microseconds (far more on a busy machine), as much as the
// work itself (a 256 × 256 decode matmul is ~65k multiply-adds).
constexpr size_t kMinParallelWork = size_t{1} << 18;

void Matmul(const Transformer& m, ThreadPool* pool, const QTensor& w, const float* x, size_t rows,
            float* y) {
  const kernels::MatmulFn fn = m.kernels->matmul[static_cast<int>(w.desc.format)];
  const size_t n_out = w.desc.rows;
  if (pool == nullptr || rows * n_out * w.desc.cols < kMinParallelWork) {
    fn(w, x, rows, y, 0, n_out);
    return;
  }
  pool->ParallelFor(n_out, kRowGrain,
                    [&](size_t begin, size_t end, size_t) { fn(w, x, rows, y, begin, end); });
}

inline void Observe(const Transformer& m, size_t layer, LinearInput which, const float* x,
                    size_t rows, size_t cols) {
  if (m.observer != nullptr) m.observer->OnLinearInput(layer, which, x, rows, cols);
}

void Attention(const Transformer& m, ThreadPool* pool, kernels::AttentionArgs args) {
  const size_t work = args.n_q * args.n_heads * args.n_slots * args.head_dim;
  if (pool == nullptr || work < kMinParallelWork) {
    args.head_begin = 0;
    args.head_end = args.n_heads;
    m.kernels->attention(args);
    return;
  }
  pool->ParallelFor(args.n_heads, 1, [&](size_t begin, size_t end, size_t) {
    kernels::AttentionArgs a = args;
    a.head_begin = begin;
    a.head_end = end;
    m.kernels->attention(a);
  });
}

// Copies layer l's ring (every slot, with its position) into the staging
// buffers and appends the batch's keys/values after it.
void StageSlidingWindow(const KvCache& kv, size_t l, ForwardScratch& s, size_t n, int32_t pos0) {
  const LayerKv& L = kv.layer(l);
  const size_t hd = kv.head_dim(), kv_heads = kv.kv_heads(), kv_dim = kv_heads * hd;
  const size_t cap = s.stage_capacity;
  for (size_t h = 0; h < kv_heads; ++h) {
    std::memcpy(s.stage_k + h * cap * hd, L.k + h * L.capacity * hd, L.capacity * hd * 4);
    std::memcpy(s.stage_v + h * cap * hd, L.v + h * L.capacity * hd, L.capacity * hd * 4);
    for (size_t i = 0; i < n; ++i) {
      const size_t dst = (h * cap + L.capacity + i) * hd;
      std::memcpy(s.stage_k + dst, s.k + i * kv_dim + h * hd, hd * 4);
      std::memcpy(s.stage_v + dst, s.v + i * kv_dim + h * hd, hd * 4);
    }
  }
  std::memcpy(s.stage_pos, L.slot_pos, L.capacity * sizeof(int32_t));
  for (size_t i = 0; i < n; ++i) s.stage_pos[L.capacity + i] = pos0 + static_cast<int32_t>(i);
}

}  // namespace

Transformer MakeTransformer(const ModelConfig& c, const ModelWeights& w,
                            const kernels::KernelTable& t) {
  Transformer m;
  m.config = &c;
  m.weights = &w;
  m.kernels = &t;
  m.rope_global = MakeRopeFreqs(c.rope_theta, c.head_dim, c.rope_scaling);
  m.rope_local = MakeRopeFreqs(c.rope_local_base_freq, c.head_dim, RopeScaling{});
  // HF multiplies by torch.tensor(hidden_size ** 0.5): a double rounded to f32.
  m.embed_scale =
      c.scale_embeddings ? static_cast<float>(std::sqrt(static_cast<double>(c.hidden_size))) : 1.0f;
  return m;
}

ForwardScratch::ForwardScratch(const ModelConfig& c, size_t batch) : max_batch(batch) {
  const size_t d = c.hidden_size, ff = c.intermediate_size, hd = c.head_dim;
  const size_t q_dim = c.num_heads * hd, kv_dim = c.num_kv_heads * hd;
  bool any_sliding = false;
  for (bool s : c.layer_is_sliding) any_sliding |= s;
  const size_t window = any_sliding ? static_cast<size_t>(c.sliding_window) : 0;
  stage_capacity = window > 0 ? window + batch : 0;

  // One allocation, every buffer on a 64-byte boundary: the layout runs
  // twice, first to size the block (base null), then to hand out pointers.
  uint8_t* base = nullptr;
  size_t offset = 0;
  auto take = [&](size_t floats) {
    float* p = base ? reinterpret_cast<float*>(base + offset) : nullptr;
    offset += AlignUp(floats * sizeof(float));
    return p;
  };
  auto layout = [&] {
    offset = 0;
    x = take(batch * d);
    xn = take(batch * d);
    q = take(batch * q_dim);
    k = take(batch * kv_dim);
    v = take(batch * kv_dim);
    att = take(batch * q_dim);
    proj = take(batch * d);
    gate = take(batch * ff);
    up = take(batch * ff);
    cos_global = take(batch * hd / 2);
    sin_global = take(batch * hd / 2);
    cos_local = take(batch * hd / 2);
    sin_local = take(batch * hd / 2);
    stage_k = take(c.num_kv_heads * stage_capacity * hd);
    stage_v = take(c.num_kv_heads * stage_capacity * hd);
    stage_pos = reinterpret_cast<int32_t*>(take(stage_capacity));  // int32 = float size
  };
  layout();
  storage_.Resize(offset);
  base = storage_.data();
  layout();
}

void ForwardBatch(const Transformer& m, KvCache& kv, ForwardScratch& s, ThreadPool* pool,
                  const int32_t* tokens, size_t n, int32_t pos0, float* logits, size_t first_out) {
  const ModelConfig& c = *m.config;
  const ModelWeights& w = *m.weights;
  const kernels::KernelTable& t = *m.kernels;
  const size_t d = c.hidden_size, ff = c.intermediate_size, hd = c.head_dim;
  const size_t n_heads = c.num_heads, n_kv = c.num_kv_heads;
  const size_t q_dim = n_heads * hd, kv_dim = n_kv * hd;
  const float eps = c.rms_norm_eps;
  const bool add_one = c.norm_add_one;
  const kernels::GluFn glu = c.activation == Activation::kSilu ? t.swiglu : t.geglu;

  // Embedding rows (decoded from whatever format the table is stored in).
  for (size_t i = 0; i < n; ++i) {
    DequantizeRow(w.embed, static_cast<uint64_t>(tokens[i]), s.x + i * d);
  }
  if (m.embed_scale != 1.0f) t.scale(s.x, m.embed_scale, n * d);

  // RoPE angles for this batch's positions, once for all layers.
  bool need_local = false, need_global = false;
  for (const LayerWeights& L : w.layers) (L.local_rope ? need_local : need_global) = true;
  if (need_global) FillRopeTables(m.rope_global, pos0, n, s.cos_global, s.sin_global);
  if (need_local) FillRopeTables(m.rope_local, pos0, n, s.cos_local, s.sin_local);

  for (size_t l = 0; l < w.layers.size(); ++l) {
    const LayerWeights& L = w.layers[l];
    const LayerKv& cache = kv.layer(l);

    // ---- Attention ----
    t.rmsnorm(s.x, L.attn_norm, s.xn, n, d, eps, add_one);
    Observe(m, l, LinearInput::kAttention, s.xn, n, d);
    Matmul(m, pool, L.wq, s.xn, n, s.q);
    Matmul(m, pool, L.wk, s.xn, n, s.k);
    Matmul(m, pool, L.wv, s.xn, n, s.v);
    if (L.q_norm != nullptr) {
      t.rmsnorm(s.q, L.q_norm, s.q, n * n_heads, hd, eps, add_one);
      t.rmsnorm(s.k, L.k_norm, s.k, n * n_kv, hd, eps, add_one);
    }
    const float* cos = L.local_rope ? s.cos_local : s.cos_global;
    const float* sin = L.local_rope ? s.sin_local : s.sin_global;
    t.rope(s.q, n, n_heads, hd, q_dim, cos, sin);
    t.rope(s.k, n, n_kv, hd, kv_dim, cos, sin);

    kernels::AttentionArgs a;
    a.q = s.q;
    a.out = s.att;
    a.n_q = n;
    a.n_heads = n_heads;
    a.n_kv_heads = n_kv;
    a.head_dim = hd;
    a.q_pos0 = pos0;
    a.scale = c.attn_scale;
    a.softcap = c.attn_logit_softcap;
    a.window = L.sliding ? c.sliding_window : 0;
    const int32_t pos_end = pos0 + static_cast<int32_t>(n);
    // A batch written into a ring would overwrite keys its own earlier
    // queries still need once positions wrap: attend over a staged copy of
    // the ring plus the batch, then store the batch.
    const bool stage = cache.ring && n > 1 && static_cast<size_t>(pos_end) > cache.capacity;
    if (stage) {
      StageSlidingWindow(kv, l, s, n, pos0);
      a.k = s.stage_k;
      a.v = s.stage_v;
      a.slot_pos = s.stage_pos;
      a.capacity = s.stage_capacity;
      a.n_slots = cache.capacity + n;
      Attention(m, pool, a);
      kv.Write(l, pos0, n, s.k, s.v);
    } else {
      kv.Write(l, pos0, n, s.k, s.v);
      a.k = cache.k;
      a.v = cache.v;
      a.slot_pos = cache.slot_pos;
      a.capacity = cache.capacity;
      a.n_slots = std::min(cache.capacity, static_cast<size_t>(pos_end));
      Attention(m, pool, a);
    }
    Observe(m, l, LinearInput::kAttentionOut, s.att, n, q_dim);
    Matmul(m, pool, L.wo, s.att, n, s.proj);
    if (L.attn_post_norm != nullptr) {
      t.rmsnorm(s.proj, L.attn_post_norm, s.proj, n, d, eps, add_one);
    }
    t.add(s.x, s.proj, s.x, n * d);

    // ---- Feed-forward ----
    t.rmsnorm(s.x, L.ffn_norm, s.xn, n, d, eps, add_one);
    Observe(m, l, LinearInput::kMlp, s.xn, n, d);
    Matmul(m, pool, L.w_gate, s.xn, n, s.gate);
    Matmul(m, pool, L.w_up, s.xn, n, s.up);
    glu(s.gate, s.up, s.gate, n * ff);
    Observe(m, l, LinearInput::kMlpDown, s.gate, n, ff);
    Matmul(m, pool, L.w_down, s.gate, n, s.proj);
    if (L.ffn_post_norm != nullptr) {
      t.rmsnorm(s.proj, L.ffn_post_norm, s.proj, n, d, eps, add_one);
    }
    t.add(s.x, s.proj, s.x, n * d);
    if (m.observer != nullptr && l == m.observer->last_layer) return;
  }

  if (logits == nullptr || first_out >= n) return;
  const size_t rows = n - first_out;
  t.rmsnorm(s.x + first_out * d, w.final_norm, s.xn, rows, d, eps, add_one);
  Observe(m, w.layers.size(), LinearInput::kHead, s.xn, rows, d);
  Matmul(m, pool, w.lm_head, s.xn, rows, logits);
  if (c.final_logit_softcap > 0.0f) {
    t.softcap(logits, c.final_logit_softcap, rows * static_cast<size_t>(c.vocab_size));
  }
}

}  // namespace qlm
