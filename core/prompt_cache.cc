#include "core/prompt_cache.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>

#include "base/error.h"

namespace qlm {
namespace {

constexpr char kMagic[8] = {'Q', 'L', 'M', 'K', 'V', 'C', 0, 0};

struct Hasher {
  uint64_t h = 1469598103934665603ull;
  void Bytes(const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 1099511628211ull;
  }
  template <class T>
  void Value(const T& v) {
    Bytes(&v, sizeof(v));
  }
  void Tensor(const QTensor& t) {
    Value(static_cast<int>(t.desc.format));
    Value(t.desc.rows);
    Value(t.desc.cols);
    const size_t n = t.desc.total_bytes, edge = std::min<size_t>(n, 4096);
    if (t.data == nullptr) return;
    Bytes(t.data, edge);
    Bytes(t.data + (n - edge), edge);
  }
};

struct Header {
  uint32_t version, kv_type, layers, kv_heads, head_dim;
  uint64_t model_id, context, n_tokens;
};

template <class T>
void Put(std::ofstream& out, const T& v) {
  out.write(reinterpret_cast<const char*>(&v), sizeof(v));
}

// Bounds-checked reader over the file's bytes.
struct Reader {
  const std::vector<char>& buf;
  size_t at = 0;
  bool Get(void* p, size_t n) {
    if (buf.size() - at < n) return false;
    std::memcpy(p, buf.data() + at, n);
    at += n;
    return true;
  }
  template <class T>
  bool Get(T* v) {
    return Get(v, sizeof(T));
  }
};

}  // namespace

uint64_t ModelIdentity(const ModelConfig& c, const ModelWeights& w) {
  Hasher h;
  h.Bytes(c.model_type.data(), c.model_type.size());
  for (int v : {c.num_layers, c.hidden_size, c.intermediate_size, c.num_heads, c.num_kv_heads,
                c.head_dim, c.vocab_size, c.sliding_window}) {
    h.Value(v);
  }
  h.Value(c.rope_theta);
  h.Value(c.rope_local_base_freq);
  for (bool s : c.layer_is_sliding) h.Value(s);
  h.Tensor(w.embed);
  h.Tensor(w.lm_head);
  for (const LayerWeights& L : w.layers) {
    for (const QTensor* t : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down}) {
      h.Tensor(*t);
    }
  }
  return h.h;
}

void SavePromptCache(const std::string& path, uint64_t model_id, const KvCache& kv,
                     std::span<const int32_t> tokens) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw Error("prompt cache " + path + ": cannot write " + tmp);
    out.write(kMagic, sizeof(kMagic));
    Put(out, kPromptCacheVersion);
    Put(out, model_id);
    Put(out, static_cast<uint32_t>(kv.kv_type()));
    Put(out, static_cast<uint32_t>(kv.num_layers()));
    Put(out, static_cast<uint32_t>(kv.kv_heads()));
    Put(out, static_cast<uint32_t>(kv.head_dim()));
    Put(out, static_cast<uint64_t>(kv.context()));
    Put(out, static_cast<uint64_t>(tokens.size()));
    out.write(reinterpret_cast<const char*>(tokens.data()),
              static_cast<std::streamsize>(tokens.size_bytes()));
    const size_t row = kv.head_dim() * kernels::KvElemBytes(kv.kv_type());
    for (size_t l = 0; l < kv.num_layers(); ++l) {
      const LayerKv& L = kv.layer(l);
      Put(out, static_cast<uint64_t>(L.used));
      out.write(reinterpret_cast<const char*>(L.slot_pos),
                static_cast<std::streamsize>(L.used * sizeof(int32_t)));
      for (size_t h = 0; h < kv.kv_heads(); ++h) {
        const size_t r0 = h * L.capacity;
        out.write(reinterpret_cast<const char*>(L.k_codes + r0 * row),
                  static_cast<std::streamsize>(L.used * row));
        out.write(reinterpret_cast<const char*>(L.v_codes + r0 * row),
                  static_cast<std::streamsize>(L.used * row));
        if (L.k_scale != nullptr) {
          out.write(reinterpret_cast<const char*>(L.k_scale + r0),
                    static_cast<std::streamsize>(L.used * sizeof(float)));
          out.write(reinterpret_cast<const char*>(L.v_scale + r0),
                    static_cast<std::streamsize>(L.used * sizeof(float)));
        }
      }
    }
    out.flush();
    if (!out) throw Error("prompt cache " + path + ": write failed (disk full?)");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    throw Error("prompt cache " + path + ": cannot rename " + tmp + " into place");
  }
}

size_t LoadPromptCache(const std::string& path, uint64_t model_id, KvCache& kv,
                       std::span<const int32_t> prompt, std::vector<int32_t>* tokens,
                       std::string* why) {
  auto fail = [&](const std::string& reason) {
    *why = reason;
    kv.Clear();
    return size_t{0};
  };
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail("no file " + path);
  const std::vector<char> buf((std::istreambuf_iterator<char>(in)),
                              std::istreambuf_iterator<char>());
  Reader r{buf};
  char magic[8];
  Header h{};
  if (!r.Get(magic, 8) || std::memcmp(magic, kMagic, 8) != 0) {
    return fail(path + " is not a qlm prompt cache (bad magic)");
  }
  if (!r.Get(&h.version) || h.version != kPromptCacheVersion) {
    return fail(path + ": unsupported version " + std::to_string(h.version));
  }
  if (!r.Get(&h.model_id) || !r.Get(&h.kv_type) || !r.Get(&h.layers) || !r.Get(&h.kv_heads) ||
      !r.Get(&h.head_dim) || !r.Get(&h.context) || !r.Get(&h.n_tokens)) {
    return fail(path + ": truncated header");
  }
  if (h.model_id != model_id) return fail(path + " was made by a different model (or weights)");
  if (h.kv_type != static_cast<uint32_t>(kv.kv_type())) {
    return fail(path + " holds a " +
                std::string(h.kv_type < 4 ? kernels::KvTypeName(static_cast<KvType>(h.kv_type))
                                          : "unknown") +
                " KV cache, this session uses " + kernels::KvTypeName(kv.kv_type()));
  }
  if (h.layers != kv.num_layers() || h.kv_heads != kv.kv_heads() || h.head_dim != kv.head_dim()) {
    return fail(path + ": KV shape differs from the model's");
  }
  if (h.context != kv.context()) {
    return fail(path + " was saved with a context of " + std::to_string(h.context) +
                ", this session has " + std::to_string(kv.context()));
  }
  if (h.n_tokens == 0 || h.n_tokens > prompt.size() || h.n_tokens > kv.context()) {
    return fail(path + " holds " + std::to_string(h.n_tokens) +
                " tokens, more than the prompt's usable prefix");
  }
  std::vector<int32_t> ids(h.n_tokens);
  if (!r.Get(ids.data(), ids.size() * sizeof(int32_t))) return fail(path + ": truncated ids");
  if (!std::equal(ids.begin(), ids.end(), prompt.begin())) {
    return fail(path + "'s tokens are not a prefix of this prompt");
  }
  kv.Clear();
  const size_t row = kv.head_dim() * kernels::KvElemBytes(kv.kv_type());
  for (size_t l = 0; l < kv.num_layers(); ++l) {
    LayerKv& L = kv.layer(l);
    uint64_t used = 0;
    if (!r.Get(&used) || used > L.capacity)
      return fail(path + ": corrupt layer " + std::to_string(l));
    if (!r.Get(L.slot_pos, used * sizeof(int32_t))) return fail(path + ": truncated");
    for (size_t s = 0; s < used; ++s) {
      // A slot holds -1 (empty) or a saved position that maps to it (ring
      // layers: pos % capacity), never a position the file does not hold.
      const int32_t pos = L.slot_pos[s];
      if (pos >= static_cast<int32_t>(h.n_tokens) || pos < -1 || (pos >= 0 && L.SlotOf(pos) != s)) {
        return fail(path + ": corrupt slot positions in layer " + std::to_string(l));
      }
    }
    for (size_t hh = 0; hh < kv.kv_heads(); ++hh) {
      const size_t r0 = hh * L.capacity;
      bool ok = r.Get(L.k_codes + r0 * row, used * row) && r.Get(L.v_codes + r0 * row, used * row);
      if (ok && L.k_scale != nullptr) {
        ok = r.Get(L.k_scale + r0, used * sizeof(float)) &&
             r.Get(L.v_scale + r0, used * sizeof(float));
      }
      if (!ok) return fail(path + ": truncated KV rows");
      if (L.k_scale != nullptr) {
        for (size_t s = 0; s < used; ++s) {
          if (!std::isfinite(L.k_scale[r0 + s]) || !std::isfinite(L.v_scale[r0 + s])) {
            return fail(path + ": corrupt KV row scales in layer " + std::to_string(l));
          }
        }
      }
    }
    L.used = used;
  }
  if (r.at != buf.size()) return fail(path + ": trailing bytes (corrupt)");
  *tokens = std::move(ids);
  return tokens->size();
}

}  // namespace qlm
