// The key/value cache of one sequence, one region per layer, in the layout the
// attention kernel reads: k/v[kv_head][slot][head_dim] plus slot_pos[slot],
// the absolute position a slot holds (-1 = empty).
//
// Full-attention layers hold one slot per position of the context
// (slot = position). Sliding-window layers keep a ring buffer of exactly
// `sliding_window` slots (slot = position mod window), so their memory does
// not depend on the context length: a query at position p only ever sees the
// keys p - window + 1 .. p, which is precisely what the ring holds after p is
// written. (Prefill batches need the keys the batch overwrites; the graph
// stages those, see core/forward.cc.)
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "base/aligned_buffer.h"
#include "loaders/model_config.h"

namespace qlm {

struct LayerKv {
  float* k = nullptr;           // [kv_heads][capacity][head_dim]
  float* v = nullptr;           // [kv_heads][capacity][head_dim]
  int32_t* slot_pos = nullptr;  // [capacity]
  size_t capacity = 0;          // slots per kv head
  bool ring = false;            // sliding window: slot = pos % capacity
  int32_t window = 0;           // attention window (0 = full attention)

  size_t SlotOf(int32_t pos) const {
    return ring ? static_cast<size_t>(pos) % capacity : static_cast<size_t>(pos);
  }
};

class KvCache {
 public:
  KvCache() = default;
  // context: the most positions the sequence may reach (full-attention
  // layers' capacity). Sliding layers get min(sliding_window, context).
  KvCache(const ModelConfig& config, size_t context);

  size_t num_layers() const { return layers_.size(); }
  const LayerKv& layer(size_t l) const { return layers_[l]; }
  LayerKv& layer(size_t l) { return layers_[l]; }
  size_t context() const { return context_; }
  size_t kv_heads() const { return kv_heads_; }
  size_t head_dim() const { return head_dim_; }
  // Bytes held by K, V and slot positions together.
  size_t bytes() const { return storage_.size(); }

  // Marks every slot empty (the K/V values are left; nothing reads them).
  void Clear();

  // Writes the K and V rows of n consecutive positions pos0.. into layer l.
  // k, v: [n, kv_heads * head_dim] (the projection output layout).
  void Write(size_t l, int32_t pos0, size_t n, const float* k, const float* v);

 private:
  AlignedBuffer storage_;
  std::vector<LayerKv> layers_;
  size_t context_ = 0, kv_heads_ = 0, head_dim_ = 0;
};

}  // namespace qlm
