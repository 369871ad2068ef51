#include "core/kv_cache.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "base/error.h"

namespace qlm {

KvCache::KvCache(const ModelConfig& c, size_t context)
    : context_(context),
      kv_heads_(static_cast<size_t>(c.num_kv_heads)),
      head_dim_(static_cast<size_t>(c.head_dim)) {
  if (context == 0) throw Error("KV cache: context must be at least 1 token");
  if (context > static_cast<size_t>(INT32_MAX)) {
    throw Error("KV cache: context " + std::to_string(context) + " exceeds 2^31 positions");
  }
  const size_t n_layers = static_cast<size_t>(c.num_layers);
  layers_.resize(n_layers);
  // One allocation, each layer's K, V and slot_pos at 64-byte-aligned offsets.
  size_t total = 0;
  std::vector<size_t> offsets(n_layers);
  for (size_t l = 0; l < n_layers; ++l) {
    LayerKv& L = layers_[l];
    const bool sliding =
        l < c.layer_is_sliding.size() && c.layer_is_sliding[l] && c.sliding_window > 0;
    L.window = sliding ? c.sliding_window : 0;
    L.ring = sliding && static_cast<size_t>(c.sliding_window) < context;
    L.capacity = L.ring ? static_cast<size_t>(c.sliding_window) : context;
    offsets[l] = total;
    const size_t kv_bytes = AlignUp(kv_heads_ * L.capacity * head_dim_ * sizeof(float));
    total += 2 * kv_bytes + AlignUp(L.capacity * sizeof(int32_t));
  }
  storage_.Resize(total);
  for (size_t l = 0; l < n_layers; ++l) {
    LayerKv& L = layers_[l];
    const size_t kv_bytes = AlignUp(kv_heads_ * L.capacity * head_dim_ * sizeof(float));
    uint8_t* base = storage_.data() + offsets[l];
    L.k = reinterpret_cast<float*>(base);
    L.v = reinterpret_cast<float*>(base + kv_bytes);
    L.slot_pos = reinterpret_cast<int32_t*>(base + 2 * kv_bytes);
  }
  Clear();
}

void KvCache::Clear() {
  for (LayerKv& L : layers_) std::fill(L.slot_pos, L.slot_pos + L.capacity, -1);
}

void KvCache::Write(size_t l, int32_t pos0, size_t n, const float* k, const float* v) {
  LayerKv& L = layers_[l];
  const size_t kv_dim = kv_heads_ * head_dim_;
  // A ring only needs the last `capacity` positions of the batch.
  const size_t skip = L.ring && n > L.capacity ? n - L.capacity : 0;
  for (size_t i = skip; i < n; ++i) {
    const int32_t pos = pos0 + static_cast<int32_t>(i);
    const size_t slot = L.SlotOf(pos);
    for (size_t h = 0; h < kv_heads_; ++h) {
      const size_t dst = (h * L.capacity + slot) * head_dim_;
      std::memcpy(L.k + dst, k + i * kv_dim + h * head_dim_, head_dim_ * sizeof(float));
      std::memcpy(L.v + dst, v + i * kv_dim + h * head_dim_, head_dim_ * sizeof(float));
    }
    L.slot_pos[slot] = pos;
  }
}

}  // namespace qlm
