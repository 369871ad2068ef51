// The key/value cache of one sequence, one region per layer, in the layout the
// attention kernel reads: k/v[kv_head][slot][head_dim] plus slot_pos[slot],
// the absolute position a slot holds (-1 = empty).
//
// Full-attention layers hold one slot per position of the context
// (slot = position). Sliding-window layers keep a ring buffer of exactly
// `sliding_window` slots (slot = position mod window), so their memory does
// not depend on the context length: a query at position p only ever sees the
// keys p - window + 1 .. p, which is precisely what the ring holds after p is
// written. (Prefill batches need the keys the batch overwrites; StageBatch
// builds a staged copy of the ring plus the batch for them.)
//
// Storage format (KvType): f32, bf16, int8 or sfp8 rows of head_dim values;
// int8 and sfp8 rows carry one f32 scale per (slot, kv head) row (int8:
// max|x| / 127, symmetric; sfp8: max|x| / 1.875, so the largest value of the
// row maps to SFP8's largest magnitude). Write encodes; the attention kernels
// decode on the fly (kernels/registry.h, AttentionArgs).
//
// Memory is committed lazily: the whole context is one reserved range of
// address space (mmap, MAP_NORESERVE), and the operating system backs a page
// only when it is first written. Within a kv head the rows are in slot order,
// so the resident memory of a full layer grows with the positions written,
// not with the context. Write commits ahead in chunks (kCommitBytes per
// region, one madvise(MADV_POPULATE_WRITE) each) instead of taking a page
// fault per 4 KiB: on the Firecracker VM of session 10 a fault cost so much
// that writing one decode token's K/V (~2 new pages per layer on average)
// took ~40 µs per layer, ~1 ms per Gemma-2-2B token. Clear() keeps the pages
// for the next sequence; they go back to the system with the cache.
#pragma once

#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <string_view>
#include <vector>

#include "base/aligned_buffer.h"
#include "kernels/registry.h"
#include "loaders/model_config.h"

namespace qlm {

using kernels::KvType;

// "f32", "bf16", "int8", "sfp8"; throws qlm::UsageError naming `flag` otherwise.
KvType ParseKvType(std::string_view name, std::string_view flag = "--kv-type");

struct LayerKv {
  float* k = nullptr;          // f32 caches: [kv_heads][capacity][head_dim]
  float* v = nullptr;          // (null for the quantized types)
  uint8_t* k_codes = nullptr;  // the same rows as bytes, any KvType
  uint8_t* v_codes = nullptr;  //   [kv_heads][capacity][head_dim · elem bytes]
  float* k_scale = nullptr;    // int8 / sfp8: [kv_heads][capacity]
  float* v_scale = nullptr;
  int32_t* slot_pos = nullptr;  // [capacity]
  size_t capacity = 0;          // slots per kv head
  bool ring = false;            // sliding window: slot = pos % capacity
  int32_t window = 0;           // attention window (0 = full attention)
  size_t used = 0;              // slots [0, used) initialised (slot_pos valid)
  size_t committed = 0;         // slots [0, committed) already populated (a hint)

  size_t SlotOf(int32_t pos) const {
    return ring ? static_cast<size_t>(pos) % capacity : static_cast<size_t>(pos);
  }
};

class KvCache {
 public:
  KvCache() = default;
  // context: the most positions the sequence may reach (full-attention
  // layers' capacity). Sliding layers get min(sliding_window, context).
  KvCache(const ModelConfig& config, size_t context, KvType type = KvType::kF32);
  KvCache(KvCache&& other) noexcept;
  KvCache& operator=(KvCache&& other) noexcept;
  KvCache(const KvCache&) = delete;
  KvCache& operator=(const KvCache&) = delete;
  ~KvCache();

  size_t num_layers() const { return layers_.size(); }
  const LayerKv& layer(size_t l) const { return layers_[l]; }
  LayerKv& layer(size_t l) { return layers_[l]; }
  size_t context() const { return context_; }
  size_t kv_heads() const { return kv_heads_; }
  size_t head_dim() const { return head_dim_; }
  KvType kv_type() const { return type_; }
  // Bytes of one slot of one layer: K and V rows of every kv head, their
  // scales (int8, sfp8) and the slot's position.
  size_t slot_bytes() const;
  // Bytes the cache holds once every position of the context is written
  // (every layer's capacity × slot_bytes, plus 64-byte alignment): the
  // address space reserved. Resident memory is used_bytes().
  size_t bytes() const { return reserved_; }
  // Bytes of the slots written so far (Σ layers used slots × slot_bytes):
  // what is resident, up to the partial page at the end of each region.
  size_t used_bytes() const;
  // bytes() of a cache for `config` at `context` without creating one:
  // Σ full layers context + Σ sliding layers min(window, context) slots.
  static size_t BytesAt(const ModelConfig& config, size_t context, KvType type);

  // Marks every slot empty. The pages written so far stay committed (a reset
  // session reuses them); destroying the cache returns them.
  void Clear();

  // Writes the K and V rows of n consecutive positions pos0.. into layer l,
  // encoding them in kv_type(). k, v: [n, kv_heads * head_dim] (the
  // projection output layout).
  void Write(size_t l, int32_t pos0, size_t n, const float* k, const float* v);

  // Points `a` at layer l (cache pointers, slot positions, capacity, type);
  // n_slots = the slots in use.
  void Bind(size_t l, kernels::AttentionArgs& a) const;
  // For a ring layer whose batch would overwrite keys its own queries still
  // need: copies the ring (every slot, with its position) into a staging
  // area, appends the batch's rows (encoded like Write) and points `a` at it.
  // The cache itself is unchanged; Write the batch afterwards.
  void BindStaged(size_t l, int32_t pos0, size_t n, const float* k, const float* v,
                  kernels::AttentionArgs& a);

  // One row of head_dim values in the cache's format and back (the scale is
  // ignored for f32/bf16). Exposed for context shifting and tests.
  void EncodeRow(const float* x, uint8_t* codes, float* scale) const;
  void DecodeRow(const uint8_t* codes, float scale, float* x) const;

 private:
  void Release();
  // Populates the pages of layer l's slots [L.committed, upto) and a chunk
  // beyond, in every region of the layer (best effort: a failure leaves the
  // pages to be faulted in by the writes themselves).
  void Commit(LayerKv& L, size_t upto);
  uint8_t* base_ = nullptr;  // mmap'ed reservation of mapped_ bytes (whole pages)
  size_t mapped_ = 0;
  size_t reserved_ = 0;  // bytes() (the layout's size, before page rounding)
  std::vector<LayerKv> layers_;
  size_t context_ = 0, kv_heads_ = 0, head_dim_ = 0;
  KvType type_ = KvType::kF32;
  AlignedBuffer stage_;  // BindStaged's copy of a ring plus a batch
};

}  // namespace qlm
