#include "core/context_shift.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "base/error.h"

namespace qlm {
namespace {

// Rotates every head_dim row of `x` (rotate-half layout, as the rope kernel)
// by the angles delta · inv_freq, in double precision.
struct Rotation {
  std::vector<double> cos, sin;
  Rotation(const RopeFreqs& f, double delta) {
    for (float w : f.inv_freq) {
      cos.push_back(std::cos(static_cast<double>(w) * delta));
      sin.push_back(std::sin(static_cast<double>(w) * delta));
    }
  }
  void Apply(float* x) const {
    const size_t half = cos.size();
    for (size_t i = 0; i < half; ++i) {
      const double a = x[i], b = x[i + half];
      x[i] = static_cast<float>(a * cos[i] - b * sin[i]);
      x[i + half] = static_cast<float>(b * cos[i] + a * sin[i]);
    }
  }
};

// A copy of one slot's K and V rows (all kv heads) in the cache's format.
struct SlotCopy {
  std::vector<uint8_t> k, v;
  std::vector<float> k_scale, v_scale;
};

}  // namespace

void ShiftKvCache(KvCache& kv, const std::vector<const RopeFreqs*>& layer_rope, size_t keep,
                  size_t discard) {
  if (layer_rope.size() != kv.num_layers()) {
    throw Error("context shift: " + std::to_string(layer_rope.size()) + " RoPE tables for " +
                std::to_string(kv.num_layers()) + " layers");
  }
  if (discard == 0) return;
  const size_t hd = kv.head_dim(), heads = kv.kv_heads();
  const size_t row_bytes = hd * kernels::KvElemBytes(kv.kv_type());
  const int32_t first_moved = static_cast<int32_t>(keep + discard);
  const int32_t d = static_cast<int32_t>(discard);
  std::vector<float> row(hd);
  for (size_t l = 0; l < kv.num_layers(); ++l) {
    LayerKv& L = kv.layer(l);
    if (hd % 2 != 0 || layer_rope[l] == nullptr || layer_rope[l]->inv_freq.size() != hd / 2) {
      throw Error("context shift: layer " + std::to_string(l) + " has no RoPE table for head_dim " +
                  std::to_string(hd));
    }
    const Rotation rot(*layer_rope[l], -static_cast<double>(discard));
    // Gather every (new position, slot copy) the layer keeps, then rewrite
    // the layer: slots may move onto each other (rings), so copy first.
    struct Entry {
      int32_t pos;
      bool rotate;
      SlotCopy c;
    };
    std::vector<Entry> kept;
    for (size_t s = 0; s < L.used; ++s) {
      const int32_t p = L.slot_pos[s];
      if (p < 0 || (p >= static_cast<int32_t>(keep) && p < first_moved)) continue;
      Entry e{p < first_moved ? p : p - d, p >= first_moved, {}};
      e.c.k.resize(heads * row_bytes);
      e.c.v.resize(heads * row_bytes);
      e.c.k_scale.assign(heads, 0.0f);
      e.c.v_scale.assign(heads, 0.0f);
      for (size_t h = 0; h < heads; ++h) {
        const size_t r = h * L.capacity + s;
        std::memcpy(e.c.k.data() + h * row_bytes, L.k_codes + r * row_bytes, row_bytes);
        std::memcpy(e.c.v.data() + h * row_bytes, L.v_codes + r * row_bytes, row_bytes);
        if (L.k_scale != nullptr) {
          e.c.k_scale[h] = L.k_scale[r];
          e.c.v_scale[h] = L.v_scale[r];
        }
      }
      kept.push_back(std::move(e));
    }
    // Oldest first, so in a ring the newest of two positions sharing a slot wins.
    std::sort(kept.begin(), kept.end(),
              [](const Entry& a, const Entry& b) { return a.pos < b.pos; });
    std::fill(L.slot_pos, L.slot_pos + L.used, -1);
    size_t used = 0;
    for (Entry& e : kept) {
      const size_t s = L.SlotOf(e.pos);
      for (size_t h = 0; h < heads; ++h) {
        const size_t r = h * L.capacity + s;
        uint8_t* k = e.c.k.data() + h * row_bytes;
        float* k_scale = &e.c.k_scale[h];
        if (e.rotate) {
          kv.DecodeRow(k, *k_scale, row.data());
          rot.Apply(row.data());
          kv.EncodeRow(row.data(), k, k_scale);
        }
        std::memcpy(L.k_codes + r * row_bytes, k, row_bytes);
        std::memcpy(L.v_codes + r * row_bytes, e.c.v.data() + h * row_bytes, row_bytes);
        if (L.k_scale != nullptr) {
          L.k_scale[r] = *k_scale;
          L.v_scale[r] = e.c.v_scale[h];
        }
      }
      L.slot_pos[s] = e.pos;
      used = std::max(used, L.ring ? std::min(L.capacity, static_cast<size_t>(e.pos) + 1) : s + 1);
    }
    L.used = used;
  }
}

}  // namespace qlm
