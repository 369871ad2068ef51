// Context shifting: when a sequence fills its context, drop a block of old
// positions from the KV cache so generation can go on in the same memory.
//
// Positions [keep, keep + discard) are dropped from every layer; positions
// from keep + discard on move down by `discard` (slot = position in full
// layers, position mod window in rings) and their keys, which were stored
// after RoPE, are rotated by -discard · θ with the layer's own RoPE
// frequencies (Gemma 3: local base for sliding layers, global otherwise), so
// they equal keys rotated at their new positions up to float rounding. RoPE
// is a rotation per frequency pair, so R(p − d) = R(−d) · R(p). Quantized
// caches decode, rotate and re-encode the keys; values are moved as stored.
// The first `keep` positions (attention sinks, e.g. BOS) stay where they are.
//
// Quality trade-off: the kept keys and values were computed while the
// dropped tokens were still visible; the model keeps their influence but can
// no longer attend to them. See docs/long-context.md.
#pragma once

#include <cstddef>
#include <vector>

#include "core/kv_cache.h"
#include "core/rope.h"

namespace qlm {

// layer_rope[l]: the RoPE frequencies layer l's keys were rotated with.
void ShiftKvCache(KvCache& kv, const std::vector<const RopeFreqs*>& layer_rope, size_t keep,
                  size_t discard);

}  // namespace qlm
