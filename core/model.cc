#include "core/model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "base/error.h"
#include "core/convert.h"
#include "quant/half.h"
#include "quant/quantize.h"

namespace qlm {
namespace {

std::string ShapeString(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// Binding context: where tensors come from and where conversions go.
class Binder {
 public:
  Binder(const ModelConfig& c, const WeightStore& store, const std::string& source,
         const BindOptions& options, BoundWeights& out)
      : config_(c), store_(store), source_(source), options_(options), out_(out) {}

  const StoredTensor& Get(const std::string& name) const {
    const StoredTensor* t = store_.Find(name);
    if (t == nullptr) {
      throw Error("missing tensor " + name + " in " + source_ + " (needed by model_type " +
                  config_.model_type + ")");
    }
    return *t;
  }

  void CheckShape(const StoredTensor& t, const std::vector<int64_t>& expected,
                  const char* why) const {
    if (t.shape != expected) {
      throw Error("tensor " + t.name + " in " + source_ + " has shape " + ShapeString(t.shape) +
                  ", expected " + ShapeString(expected) + " (" + why + " from config.json)");
    }
  }

  // A tensor already in a kernel format (.qlm, repacked GPTQ), or null.
  const QTensor* Prepared(const std::string& name) const {
    if (options_.prepared == nullptr) return nullptr;
    const auto it = options_.prepared->find(name);
    return it == options_.prepared->end() ? nullptr : &it->second;
  }

  void CheckPreparedShape(const std::string& name, const QTensor& t, int64_t rows, int64_t cols,
                          const char* why) const {
    if (t.desc.rows != static_cast<uint64_t>(rows) || t.desc.cols != static_cast<uint64_t>(cols)) {
      throw Error("tensor " + name + " in " + source_ + " has shape [" +
                  std::to_string(t.desc.rows) + ", " + std::to_string(t.desc.cols) +
                  "], expected " + ShapeString({rows, cols}) + " (" + why + " from config.json)");
    }
  }

  // A prepared linear: in place, or converted when --quant asks for another
  // format (decoded with DequantizeRow, then rounded to nearest).
  QTensor PreparedLinear(const std::string& name, const QTensor& t, int64_t rows, int64_t cols,
                         const char* why) {
    CheckPreparedShape(name, t, rows, cols, why);
    const std::optional<Format> quant = QuantFor(name);
    if (!quant || (*quant == t.desc.format &&
                   (options_.group_size == 0 || t.desc.group_size == options_.group_size))) {
      return t;
    }
    ConvertSource src;
    src.name = name;
    src.rows = t.desc.rows;
    src.cols = t.desc.cols;
    src.view = &t;
    return Keep(ConvertTensor(src, *quant, QuantizeOpts(), options_.pool));
  }

  // The format --quant asks for `name` (the head may have its own).
  std::optional<Format> QuantFor(const std::string& name) const {
    const bool head = name == "model.embed_tokens.weight" || name == "lm_head.weight";
    return head && options_.head_quant ? options_.head_quant : options_.quant;
  }

  // A [rows, cols] linear weight as the kernels read it.
  QTensor Linear(const std::string& name, int64_t rows, int64_t cols, const char* why) {
    if (const QTensor* p = Prepared(name)) return PreparedLinear(name, *p, rows, cols, why);
    const StoredTensor& t = Get(name);
    CheckShape(t, {rows, cols}, why);
    const auto r = static_cast<uint64_t>(rows), c = static_cast<uint64_t>(cols);
    Format want;
    if (const std::optional<Format> quant = QuantFor(name)) {
      want = *quant;
    } else if (t.dtype == DType::kBF16) {
      want = Format::kBF16;
    } else {
      want = Format::kF32;  // f32 in place; f16 converted
    }
    // Zero copy when the stored bytes already are the kernel's format (and
    // suitably aligned: safetensors does not promise alignment).
    const bool aligned = reinterpret_cast<uintptr_t>(t.data) % DTypeSize(t.dtype) == 0;
    if (aligned && ((want == Format::kF32 && t.dtype == DType::kF32) ||
                    (want == Format::kBF16 && t.dtype == DType::kBF16))) {
      return ViewTensor(MakeTensorDesc(want, r, c), t.data);
    }
    if (want == Format::kF32 || want == Format::kBF16) {
      const TensorDesc desc = MakeTensorDesc(want, r, c);
      AlignedBuffer& buf = Own(desc.total_bytes);
      std::vector<float> row(c);
      for (uint64_t i = 0; i < r; ++i) {
        RowToF32(t, i, c, row.data());
        if (want == Format::kF32) {
          std::memcpy(buf.data() + i * c * sizeof(float), row.data(), c * sizeof(float));
        } else {
          auto* dst = reinterpret_cast<uint16_t*>(buf.data()) + i * c;
          for (uint64_t j = 0; j < c; ++j) dst[j] = F32ToBF16(row[j]);
        }
      }
      return ViewTensor(desc, buf.data());
    }
    // Quantized formats: round-to-nearest, a block of rows at a time so the
    // f32 staging stays small even for a 256k-row output head, split over
    // the pool (core/convert.h).
    ConvertSource src;
    src.name = name;
    src.rows = r;
    src.cols = c;
    src.stored = &t;
    return Keep(ConvertTensor(src, want, QuantizeOpts(), options_.pool));
  }

  // A 1-D vector (norm weight) as f32.
  const float* Vector(const std::string& name, int64_t n, const char* why) {
    if (const QTensor* p = Prepared(name)) {
      CheckPreparedShape(name, *p, 1, n, why);
      if (p->desc.format == Format::kF32) return reinterpret_cast<const float*>(p->data);
      AlignedBuffer& buf = Own(static_cast<size_t>(n) * sizeof(float));
      DequantizeRow(*p, 0, buf.as<float>());
      return buf.as<float>();
    }
    const StoredTensor& t = Get(name);
    CheckShape(t, {n}, why);
    AlignedBuffer& buf = Own(static_cast<size_t>(n) * sizeof(float));
    RowToF32(t, 0, static_cast<uint64_t>(n), buf.as<float>());
    return buf.as<float>();
  }

 private:
  QuantizeOptions QuantizeOpts() const {
    QuantizeOptions q;
    q.group_size = options_.group_size;
    return q;
  }

  // Keeps a converted tensor's blob; the view stays valid (moving the
  // buffer into `owned` does not relocate its heap memory).
  QTensor Keep(QuantizedTensor q) {
    const QTensor view = q.view();
    out_.owned_bytes += q.blob.size();
    out_.owned.push_back(std::move(q.blob));
    return view;
  }

  AlignedBuffer& Own(size_t bytes) {
    out_.owned.emplace_back(bytes);
    out_.owned_bytes += bytes;
    return out_.owned.back();
  }

  // Row i (of `cols` elements) of a stored tensor, converted to f32.
  void RowToF32(const StoredTensor& t, uint64_t i, uint64_t cols, float* out) const {
    const uint8_t* src = t.data + i * cols * DTypeSize(t.dtype);
    switch (t.dtype) {
      case DType::kF32:
        std::memcpy(out, src, cols * sizeof(float));
        return;
      case DType::kBF16:
        for (uint64_t j = 0; j < cols; ++j) {
          uint16_t b;
          std::memcpy(&b, src + 2 * j, 2);
          out[j] = BF16ToF32(b);
        }
        return;
      case DType::kF16:
        for (uint64_t j = 0; j < cols; ++j) {
          uint16_t h;
          std::memcpy(&h, src + 2 * j, 2);
          out[j] = F16ToF32(h);
        }
        return;
      case DType::kI32:
        break;
    }
    throw Error("tensor " + t.name + " in " + source_ + " has dtype " + DTypeName(t.dtype) +
                "; a float tensor (F32, BF16 or F16) is needed here");
  }

  const ModelConfig& config_;
  const WeightStore& store_;
  const std::string& source_;
  const BindOptions& options_;
  BoundWeights& out_;
};

}  // namespace

BoundWeights BindWeights(const ModelConfig& c, const WeightStore& store, const std::string& source,
                         const BindOptions& options) {
  BoundWeights out;
  Binder b(c, store, source, options, out);
  const int64_t d = c.hidden_size, ff = c.intermediate_size, hd = c.head_dim;
  const int64_t q_dim = int64_t{c.num_heads} * hd, kv_dim = int64_t{c.num_kv_heads} * hd;
  const bool gemma2_norms = c.post_norms;

  // Every weight matrix goes through here, so progress counts them.
  const size_t total = (c.tie_word_embeddings ? 1 : 2) + 7 * static_cast<size_t>(c.num_layers);
  size_t done = 0;
  auto linear = [&](const std::string& name, int64_t rows, int64_t cols, const char* why) {
    QTensor t = b.Linear(name, rows, cols, why);
    if (options.progress) options.progress(++done, total, name);
    return t;
  };

  ModelWeights& w = out.w;
  w.embed = linear("model.embed_tokens.weight", c.vocab_size, d, "vocab_size × hidden_size");
  if (c.tie_word_embeddings) {
    w.lm_head = w.embed;  // one tensor: row lookup and output head
  } else {
    w.lm_head = linear("lm_head.weight", c.vocab_size, d, "vocab_size × hidden_size");
  }
  w.final_norm = b.Vector("model.norm.weight", d, "hidden_size");

  // Grown one bound layer at a time: a config that claims more layers than
  // the file holds fails at the first missing tensor, not in an allocation.
  for (int l = 0; l < c.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    if (store.Find(p + "self_attn.q_proj.bias") != nullptr ||
        (options.prepared != nullptr && options.prepared->count(p + "self_attn.q_proj.bias"))) {
      throw Error("tensor " + p + "self_attn.q_proj.bias in " + source +
                  ": attention biases are not supported");
    }
    LayerWeights& L = w.layers.emplace_back();
    L.wq = linear(p + "self_attn.q_proj.weight", q_dim, d,
                  "num_attention_heads·head_dim × hidden_size");
    L.wk = linear(p + "self_attn.k_proj.weight", kv_dim, d,
                  "num_key_value_heads·head_dim × hidden_size");
    L.wv = linear(p + "self_attn.v_proj.weight", kv_dim, d,
                  "num_key_value_heads·head_dim × hidden_size");
    L.wo = linear(p + "self_attn.o_proj.weight", d, q_dim,
                  "hidden_size × num_attention_heads·head_dim");
    L.w_gate = linear(p + "mlp.gate_proj.weight", ff, d, "intermediate_size × hidden_size");
    L.w_up = linear(p + "mlp.up_proj.weight", ff, d, "intermediate_size × hidden_size");
    L.w_down = linear(p + "mlp.down_proj.weight", d, ff, "hidden_size × intermediate_size");
    L.attn_norm = b.Vector(p + "input_layernorm.weight", d, "hidden_size");
    if (gemma2_norms) {
      L.attn_post_norm = b.Vector(p + "post_attention_layernorm.weight", d, "hidden_size");
      L.ffn_norm = b.Vector(p + "pre_feedforward_layernorm.weight", d, "hidden_size");
      L.ffn_post_norm = b.Vector(p + "post_feedforward_layernorm.weight", d, "hidden_size");
    } else {
      L.ffn_norm = b.Vector(p + "post_attention_layernorm.weight", d, "hidden_size");
    }
    if (c.qk_norm) {
      L.q_norm = b.Vector(p + "self_attn.q_norm.weight", hd, "head_dim");
      L.k_norm = b.Vector(p + "self_attn.k_norm.weight", hd, "head_dim");
    }
    L.sliding = static_cast<size_t>(l) < c.layer_is_sliding.size() &&
                c.layer_is_sliding[static_cast<size_t>(l)] && c.sliding_window > 0;
    L.local_rope = L.sliding && c.arch == Arch::kGemma3;
  }
  return out;
}

}  // namespace qlm
