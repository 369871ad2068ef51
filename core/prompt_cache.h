// Prompt cache files: a session's KV cache and token ids saved after a
// prefill, so a later run with the same prefix loads them instead of
// evaluating the prefix again (`qlm run --prompt-cache FILE`).
//
// Layout (little-endian):
//   "QLMKVC\0\0" magic, u32 version (1),
//   u64 model id (ModelIdentity: config fields + sampled weight bytes),
//   u32 kv type, u32 layers, u32 kv heads, u32 head_dim, u64 context,
//   u64 n tokens, i32 ids[n],
//   per layer: u64 used slots, i32 slot_pos[used], then per kv head the K
//   rows [used], the V rows [used] (codes of the kv type) and, int8/sfp8,
//   the K and V row scales [used].
// A file is used only if every header field matches the session and its
// ids are a prefix of the new prompt; otherwise the caller re-evaluates.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/kv_cache.h"
#include "core/model.h"

namespace qlm {

inline constexpr uint32_t kPromptCacheVersion = 1;

// FNV-1a hash of the config fields that shape the graph and of the first
// and last 4 KiB of every weight tensor: a cache made by another model (or
// the same one quantized differently) does not match.
uint64_t ModelIdentity(const ModelConfig& config, const ModelWeights& weights);

// Writes tokens (all evaluated, positions 0..n-1, no context shift) and the
// cache. Throws qlm::Error if the file cannot be written.
void SavePromptCache(const std::string& path, uint64_t model_id, const KvCache& kv,
                     std::span<const int32_t> tokens);

// Loads `path` into `kv` (which must be empty) if it matches; returns the
// number of tokens restored into *tokens, or 0 with *why saying what did
// not match (missing file, other model, other kv type or context, not a
// prefix of `prompt`, truncated or corrupt).
size_t LoadPromptCache(const std::string& path, uint64_t model_id, KvCache& kv,
                       std::span<const int32_t> prompt, std::vector<int32_t>* tokens,
                       std::string* why);

}  // namespace qlm
