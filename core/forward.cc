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
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <string>
#include <utility>

#include "base/error.h"
#include "core/thread_pool.h"
#include "quant/quantize.h"

namespace qlm {
namespace {

// Output rows per thread-pool range: keeps each thread's slice of y on whole
// cache lines and gives SIMD kernels full row tiles. Every kernel computes a
// row the same way whatever range it falls in, so the split (and the thread
// count) never changes a result bit.
constexpr size_t kRowGrain = 16;
// Below this many multiply-adds an op runs on the calling thread alone: waking
// the pool costs microseconds (far more on a busy machine), as much as the
// work itself (a 256 × 256 decode matmul is ~65k multiply-adds).
constexpr size_t kMinParallelWork = size_t{1} << 18;
// Prefill blocking of the int8-activation path: per call the kernels stream
// every activation row past each tile of weight rows, so a block of
// activations (codes + the kernels' expanded scales, ~2 bytes per input) and
// a block of weight rows are sized to share the 1 MiB L2 of the Zen 4 this
// was tuned on instead of streaming [M, K] activations from L3.
constexpr size_t kQ8ActBlockBytes = size_t{384} << 10;
constexpr size_t kQ8WeightBlockBytes = size_t{256} << 10;
// Prefill loops of the int8-activation path hand out their output rows in
// about this many chunks per thread, claimed by whichever thread is free
// (ThreadPool::ParallelForChunks), instead of one contiguous range per
// thread: the two vCPUs of the Emerald Rapids VM ran pp512's linears at
// different speeds, so with fixed halves one thread sat idle ~7 % of the
// time at the end of each loop (measured: 11.15 s vs 10.46 s busy in 11.60 s
// of loops, docs/benchmarks.md). Only there: those activations are quantized
// once per loop, while the f32-activation kernels convert all of x on every
// call (the int8 weights' int16 codes, the f32 panels' stored-order copy),
// which 16 calls instead of 2 made 12 % slower (int8 pp512). Decode keeps one
// range per thread: a contiguous stream per core is what its memory-bound
// kernels are tuned for.
constexpr size_t kPrefillChunksPerThread = 8;

// One linear input [rows, cols] and, made on first use and shared by every
// matmul that reads it, its int8 copy for the int8-activation path.
// `profile`: where the linears reading it are timed (decode steps only).
struct ActInput {
  ActInput(const float* x_, size_t rows_, size_t cols_, LinearProfile* profile_)
      : x(x_), rows(rows_), cols(cols_), profile(profile_) {}
  const float* x = nullptr;
  size_t rows = 0, cols = 0;
  LinearProfile* profile = nullptr;
  bool quantized = false;
  const int32_t* perm = nullptr;  // the permutation the int8 copy was made with
  size_t block = 0;               // and its activation block (kernels::Q8ActBlockFor)
  kernels::Q8Acts q8;
};

bool UsesInt8Acts(const Transformer& m, const QTensor& w) {
  return m.int8_activations[static_cast<int>(w.desc.format)] &&
         m.kernels->quantize_acts != nullptr &&
         m.kernels->matmul_q8[static_cast<int>(w.desc.format)] != nullptr;
}

const int32_t* PermOf(const QTensor& w) { return w.desc.has_perm ? w.perm : nullptr; }

bool SamePerm(const int32_t* a, const int32_t* b, size_t n) {
  return a == b || (a != nullptr && b != nullptr && std::memcmp(a, b, n * sizeof(int32_t)) == 0);
}

// Whether two weights take their int8 activations in the same blocks.
bool SameActBlock(const TensorDesc& a, const TensorDesc& b, size_t rows) {
  return kernels::Q8ActBlockFor(a, rows) == kernels::Q8ActBlockFor(b, rows);
}

// The int8 copy of `in` gathered by w's permutation, in the activation
// blocks w takes; quantized once (rows split across the pool) and reused
// while the permutation and the block stay the same.
const kernels::Q8Acts& Quantized(const Transformer& m, ForwardScratch& s, ThreadPool* pool,
                                 ActInput& in, const QTensor& w) {
  const int32_t* perm = PermOf(w);
  const size_t block = kernels::Q8ActBlockFor(w.desc, in.rows);
  if (in.quantized && in.block == block && SamePerm(in.perm, perm, in.cols)) return in.q8;
  if (in.cols > s.q8_max_k || in.rows > s.max_batch) {
    throw Error("forward: linear input [" + std::to_string(in.rows) + ", " +
                std::to_string(in.cols) + "] exceeds the int8 scratch of " +
                std::to_string(s.max_batch) + " rows of " + std::to_string(s.q8_max_k));
  }
  kernels::Q8Acts& q = in.q8;
  q.m = in.rows;
  q.k = in.cols;
  q.k_padded = kernels::Q8ActsQuantBytes(1, in.cols);
  q.q = s.q8_codes;
  q.scales = s.q8_scales;
  q.sums = s.q8_sums;
  q.block = block;
  const size_t kp = q.k_padded, blocks = kp / block;
  const kernels::QuantizeActsFn fn = m.kernels->quantize_acts;
  auto rows = [&](size_t begin, size_t end, size_t) {
    fn(in.x + begin * in.cols, end - begin, in.cols, perm, block, s.q8_codes + begin * kp,
       s.q8_scales + begin * blocks, s.q8_sums + begin * blocks);
  };
  if (pool == nullptr || in.rows * in.cols < kMinParallelWork) {
    rows(0, in.rows, 0);
  } else {
    pool->ParallelFor(in.rows, 1, rows);  // rows are independent: any split, same bits
  }
  in.quantized = true;
  in.perm = perm;
  in.block = block;
  return q;
}

// Weight rows per block of MatmulQ8Range's prefill walk (row_bytes: one
// weight row): whole row grains filling kQ8WeightBlockBytes.
size_t Q8WeightBlockRows(size_t row_bytes) {
  return std::max<size_t>(kRowGrain, kQ8WeightBlockBytes / row_bytes / kRowGrain * kRowGrain);
}

// Runs fn(begin, end, index) over the `total` output rows of a loop of
// linears with `act_rows` activation rows; q8: the int8-activation path.
// Its prefill chunks are about 1/kPrefillChunksPerThread of a thread's share,
// whole blocks of MatmulQ8Range's weight rows where the share holds one
// (row_bytes: one weight row of the loop), else whole row grains.
template <class Fn>
void ParallelRows(ThreadPool& pool, bool q8, size_t act_rows, size_t total, size_t row_bytes,
                  Fn&& fn) {
  if (!q8 || act_rows == 1) return pool.ParallelFor(total, kRowGrain, fn);
  const size_t block = Q8WeightBlockRows(row_bytes);
  const size_t share = (total + kPrefillChunksPerThread * pool.num_threads() - 1) /
                       (kPrefillChunksPerThread * pool.num_threads());
  const size_t unit = share >= block ? block : kRowGrain;
  pool.ParallelForChunks(total, (share + unit - 1) / unit * unit, fn);
}

// Rows [begin, end) of y = x · wᵀ through the int8-activation kernel. Prefill
// walks blocks of weight rows × blocks of activation rows that fit L2
// together (see kQ8ActBlockBytes); the blocks depend only on the shapes, so
// a row's result never depends on the thread split.
void MatmulQ8Range(const Transformer& m, const QTensor& w, const kernels::Q8Acts& x, float* y,
                   size_t begin, size_t end) {
  const kernels::MatmulQ8Fn fn = m.kernels->matmul_q8[static_cast<int>(w.desc.format)];
  const size_t mb = std::clamp<size_t>(kQ8ActBlockBytes / (2 * x.k_padded) / 4 * 4, 4, 64);
  if (x.m <= mb) {
    fn(w, x, y, begin, end);
    return;
  }
  const size_t nb = Q8WeightBlockRows(w.desc.row_bytes);
  const size_t blocks = x.k_padded / x.block, n_total = w.desc.rows;
  for (size_t n0 = begin; n0 < end; n0 += nb) {
    const size_t n1 = std::min(end, n0 + nb);
    for (size_t i0 = 0; i0 < x.m; i0 += mb) {
      kernels::Q8Acts sub = x;
      sub.m = std::min(mb, x.m - i0);
      sub.q = x.q + i0 * x.k_padded;
      sub.scales = x.scales + i0 * blocks;
      sub.sums = x.sums + i0 * blocks;
      fn(w, sub, y + i0 * n_total, n0, n1);
    }
  }
}

// Times one parallel loop of linears into `profile` (when non-null).
class ProfileScope {
 public:
  explicit ProfileScope(LinearProfile* profile)
      : profile_(profile),
        t0_(profile_ != nullptr ? std::chrono::steady_clock::now()
                                : std::chrono::steady_clock::time_point{}) {}
  void Finish(uint64_t rows, uint64_t cols, Format format, uint64_t act_rows, uint64_t bytes) {
    if (profile_ == nullptr) return;
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
        std::chrono::steady_clock::now() - t0_);
    profile_->Add(rows, cols, format, act_rows, static_cast<uint64_t>(ns.count()), bytes);
  }

 private:
  LinearProfile* profile_;
  std::chrono::steady_clock::time_point t0_;
};

// The linears reading one input: y_j = x · w_jᵀ for each (w_j, y_j).
struct Linear {
  const QTensor* w;
  float* y;
};

// Runs the linears of `ls` that read `in`, as ONE parallel loop over their
// concatenated output rows (q/k/v: one dispatch, one activation
// quantization, balanced across threads). Linears whose path or input
// permutation differ run one after another, each quantizing as needed.
void Linears(const Transformer& m, ForwardScratch& s, ThreadPool* pool, ActInput& in,
             std::initializer_list<Linear> ls) {
  const Linear* first = ls.begin();
  const bool q8 = UsesInt8Acts(m, *first->w);
  bool uniform = true;
  size_t total = 0;
  uint64_t bytes = 0;  // weight bytes the loop reads (for the profile)
  for (const Linear& l : ls) {
    uniform &= UsesInt8Acts(m, *l.w) == q8 && SamePerm(PermOf(*l.w), PermOf(*first->w), in.cols) &&
               SameActBlock(l.w->desc, first->w->desc, in.rows);
    total += l.w->desc.rows;
    bytes += l.w->desc.total_bytes;
  }
  if (!uniform) {
    for (const Linear& l : ls) Linears(m, s, pool, in, {l});
    return;
  }
  ProfileScope timed(in.profile);
  const kernels::Q8Acts* x8 = q8 ? &Quantized(m, s, pool, in, *first->w) : nullptr;
  // Output rows [begin, end) of the concatenation.
  auto run = [&](size_t begin, size_t end, size_t) {
    size_t offset = 0;
    for (const Linear& l : ls) {
      const size_t n = l.w->desc.rows;
      const size_t b = std::max(begin, offset), e = std::min(end, offset + n);
      if (b < e) {
        if (q8) {
          MatmulQ8Range(m, *l.w, *x8, l.y, b - offset, e - offset);
        } else {
          m.kernels->matmul[static_cast<int>(l.w->desc.format)](*l.w, in.x, in.rows, l.y,
                                                                b - offset, e - offset);
        }
      }
      offset += n;
    }
  };
  if (pool == nullptr || in.rows * total * in.cols < kMinParallelWork) {
    run(0, total, 0);
  } else {
    ParallelRows(*pool, q8, in.rows, total, first->w->desc.row_bytes, run);
  }
  timed.Finish(total, in.cols, first->w->desc.format, in.rows, bytes);
}

// The gated MLP's first half: out = act(x · w_gateᵀ) ⊙ (x · w_upᵀ), one
// parallel loop over the intermediate columns: each range computes its gate
// and up columns and applies the GLU to them while they are still in cache
// (out may alias the gate buffer; up is scratch).
void GatedLinears(const Transformer& m, ForwardScratch& s, ThreadPool* pool, ActInput& in,
                  const QTensor& w_gate, const QTensor& w_up, float* gate, float* up,
                  kernels::GluFn glu) {
  const size_t ff = w_gate.desc.rows;
  const bool q8 = UsesInt8Acts(m, w_gate);
  const bool uniform = UsesInt8Acts(m, w_up) == q8 &&
                       SamePerm(PermOf(w_gate), PermOf(w_up), in.cols) &&
                       SameActBlock(w_gate.desc, w_up.desc, in.rows);
  auto apply = [&](size_t begin, size_t end) {
    for (size_t i = 0; i < in.rows; ++i) {
      glu(gate + i * ff + begin, up + i * ff + begin, gate + i * ff + begin, end - begin);
    }
  };
  if (!uniform) {
    Linears(m, s, pool, in, {{&w_gate, gate}});
    Linears(m, s, pool, in, {{&w_up, up}});
    apply(0, ff);
    return;
  }
  ProfileScope timed(in.profile);
  const kernels::Q8Acts* x8 = q8 ? &Quantized(m, s, pool, in, w_gate) : nullptr;
  auto run = [&](size_t begin, size_t end, size_t) {
    for (const auto& [w, y] : {std::pair{&w_gate, gate}, std::pair{&w_up, up}}) {
      if (q8) {
        MatmulQ8Range(m, *w, *x8, y, begin, end);
      } else {
        m.kernels->matmul[static_cast<int>(w->desc.format)](*w, in.x, in.rows, y, begin, end);
      }
    }
    apply(begin, end);
  };
  if (pool == nullptr || in.rows * 2 * ff * in.cols < kMinParallelWork) {
    run(0, ff, 0);
  } else {
    ParallelRows(*pool, q8, in.rows, ff, w_gate.desc.row_bytes, run);
  }
  timed.Finish(2 * ff, in.cols, w_gate.desc.format, in.rows,
               w_gate.desc.total_bytes + w_up.desc.total_bytes);
}

inline void Observe(const Transformer& m, size_t layer, LinearInput which, const float* x,
                    size_t rows, size_t cols) {
  if (m.observer != nullptr) m.observer->OnLinearInput(layer, which, x, rows, cols);
}

// Attention split across the pool without changing a bit of the result:
// the kernel tiles (query, head) rows per kv head, and a row's arithmetic
// depends on its tile, so work is split only along boundaries that keep
// every tile intact: whole kv-head groups, or (prefill) chunks of
// kAttnQueryGrain queries (a multiple of any tile size the kernel uses).
// Causal prefill gives later queries more keys, so with query chunks each
// range takes one chunk from the front and its mirror from the back.
constexpr size_t kAttnQueryGrain = 32;
// Decode attention streams each layer's K/V from memory (cold: the layers'
// caches together outgrow L2) at ~0.6 µs per slot for Gemma-2-2B's 8 heads,
// so it pays to split from a few dozen slots on, far below kMinParallelWork:
// at 2 threads it cut the non-matmul share of a q4 tg128 step from
// 3.9-4.1 % to 2.4-3.3 % (qlm bench --profile, three interleaved rounds,
// docs/benchmarks.md session 10).
constexpr size_t kMinParallelAttentionWork = size_t{1} << 14;

void Attention(const Transformer& m, ThreadPool* pool, kernels::AttentionArgs args) {
  const size_t work = args.n_q * args.n_heads * args.n_slots * args.head_dim;
  args.head_begin = 0;
  args.head_end = args.n_heads;
  if (pool == nullptr || pool->num_threads() == 1 || work < kMinParallelAttentionWork) {
    m.kernels->attention(args);
    return;
  }
  const size_t threads = pool->num_threads();
  const size_t group = args.n_heads / args.n_kv_heads;
  if (args.n_kv_heads % threads == 0 || args.n_q < 2 * kAttnQueryGrain) {
    pool->ParallelFor(args.n_kv_heads, 1, [&](size_t begin, size_t end, size_t) {
      kernels::AttentionArgs a = args;
      a.head_begin = begin * group;
      a.head_end = end * group;
      m.kernels->attention(a);
    });
    return;
  }
  const size_t row = args.n_heads * args.head_dim;  // floats per query in q and out
  const size_t chunks = 2 * threads;
  auto chunk = [&](size_t c) {
    size_t begin = 0, end = 0;
    ThreadPool::RangeFor(args.n_q, kAttnQueryGrain, c, chunks, &begin, &end);
    if (begin >= end) return;
    kernels::AttentionArgs a = args;
    a.q = args.q + begin * row;
    a.out = args.out + begin * row;
    a.n_q = end - begin;
    a.q_pos0 = args.q_pos0 + static_cast<int32_t>(begin);
    m.kernels->attention(a);
  };
  pool->ParallelFor(threads, 1, [&](size_t begin, size_t end, size_t) {
    for (size_t t = begin; t < end; ++t) {
      chunk(t);
      chunk(chunks - 1 - t);
    }
  });
}

}  // namespace

void LinearProfile::Add(uint64_t rows, uint64_t cols, Format format, uint64_t act_rows, uint64_t ns,
                        uint64_t bytes) {
  LinearProfileEntry* e = nullptr;
  for (size_t i = 0; i < size && e == nullptr; ++i) {
    LinearProfileEntry& c = entries[i];
    if (c.rows == rows && c.cols == cols && c.format == format) e = &c;
  }
  if (e == nullptr) {
    if (size < kMaxEntries) {
      e = &entries[size++];
      e->rows = rows;
      e->cols = cols;
      e->format = format;
    } else {
      e = &other;
    }
  }
  ++e->calls;
  e->act_rows += act_rows;
  e->ns += ns;
  e->bytes += bytes;
}

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
  // Which formats take int8 activations (see Transformer::int8_activations).
  m.int8_activations[static_cast<int>(Format::kQ4)] = true;
  if (const char* env = std::getenv("QLM_ACTIVATIONS"); env != nullptr && *env != '\0') {
    const std::string v = env;
    if (v != "f32" && v != "int8") {
      throw UsageError("QLM_ACTIVATIONS=" + v + ": expected f32 or int8");
    }
    m.int8_activations[static_cast<int>(Format::kQ4)] = v == "int8";
    m.int8_activations[static_cast<int>(Format::kInt8)] = v == "int8";
  }
  return m;
}

ForwardScratch::ForwardScratch(const ModelConfig& c, size_t batch) : max_batch(batch) {
  const size_t d = c.hidden_size, ff = c.intermediate_size, hd = c.head_dim;
  const size_t q_dim = c.num_heads * hd, kv_dim = c.num_kv_heads * hd;
  q8_max_k = std::max({d, q_dim, ff});  // inputs of q/k/v/gate/up, o, down

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
    q8_codes =
        reinterpret_cast<int8_t*>(take((kernels::Q8ActsQuantBytes(batch, q8_max_k) + 3) / 4));
    q8_scales = take(kernels::Q8ActsBlockCount(batch, q8_max_k));
    q8_sums = reinterpret_cast<int32_t*>(take(kernels::Q8ActsBlockCount(batch, q8_max_k)));
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
  // Decode steps and prefill batches go to separate profiles (a prefill's
  // head reads only the rows of first_out on: one, for the last token).
  LinearProfile* const profile = n == 1 ? s.profile : s.prefill_profile;

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
    ActInput attn_in{s.xn, n, d, profile};
    Linears(m, s, pool, attn_in, {{&L.wq, s.q}, {&L.wk, s.k}, {&L.wv, s.v}});
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
    // KvCache::Bind* set the cache pointers, its storage type and n_slots.
    if (stage) {
      kv.BindStaged(l, pos0, n, s.k, s.v, a);
      Attention(m, pool, a);
      kv.Write(l, pos0, n, s.k, s.v);
    } else {
      kv.Write(l, pos0, n, s.k, s.v);
      kv.Bind(l, a);
      Attention(m, pool, a);
    }
    Observe(m, l, LinearInput::kAttentionOut, s.att, n, q_dim);
    ActInput att_out{s.att, n, q_dim, profile};
    Linears(m, s, pool, att_out, {{&L.wo, s.proj}});
    if (L.attn_post_norm != nullptr) {
      t.rmsnorm(s.proj, L.attn_post_norm, s.proj, n, d, eps, add_one);
    }
    t.add(s.x, s.proj, s.x, n * d);

    // ---- Feed-forward ----
    t.rmsnorm(s.x, L.ffn_norm, s.xn, n, d, eps, add_one);
    Observe(m, l, LinearInput::kMlp, s.xn, n, d);
    ActInput mlp_in{s.xn, n, d, profile};
    GatedLinears(m, s, pool, mlp_in, L.w_gate, L.w_up, s.gate, s.up, glu);
    Observe(m, l, LinearInput::kMlpDown, s.gate, n, ff);
    ActInput down_in{s.gate, n, ff, profile};
    Linears(m, s, pool, down_in, {{&L.w_down, s.proj}});
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
  ActInput head_in{s.xn, rows, d, profile};
  Linears(m, s, pool, head_in, {{&w.lm_head, logits}});
  if (c.final_logit_softcap > 0.0f) {
    t.softcap(logits, c.final_logit_softcap, rows * static_cast<size_t>(c.vocab_size));
  }
}

}  // namespace qlm
