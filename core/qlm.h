// qlm's library API: load a model, open sessions on it, run tokens or
// generate text with a streaming callback.
//
//   qlm::Model model = qlm::Model::Load("models/austen-gemma3");
//   qlm::Session session(model);
//   qlm::GenerateParams params;
//   params.max_tokens = 64;
//   session.Generate("It is a truth", params, [](int32_t, std::string_view text) {
//     std::fwrite(text.data(), 1, text.size(), stdout);
//     return true;  // false stops generation
//   });
//
// A Model is immutable once loaded and may be shared by several Sessions
// (one per sequence: each owns its KV cache, scratch and thread pool). A
// Session is not thread-safe; the loaded model must outlive its Sessions
// (moving the Model object is fine). Errors are qlm::Error, or
// qlm::UsageError for bad parameters (base/error.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/sampling.h"
#include "core/tokenizer.h"
#include "kernels/registry.h"
#include "loaders/model_config.h"
#include "quant/format.h"

namespace qlm {

using kernels::KvType;  // f32, bf16, int8, sfp8 (kernels/registry.h)

struct ModelWeights;
struct Transformer;
struct LinearProfile;

struct LoadOptions {
  // Kernel table: "scalar", "avx2", "avx512", "neon"; empty = the QLM_KERNELS
  // environment variable, else the best the CPU supports.
  std::string kernels;
  // Convert the linear weights and the output head to this format while
  // loading (round-to-nearest). nullopt: as stored (f32/bf16 zero-copy).
  std::optional<Format> quant;
  uint32_t group_size = 0;  // q4 group size for `quant` (0 = default)
  // The embedding and output head in this format instead (nullopt: `quant`).
  std::optional<Format> head_quant;
  // Threads for load-time work (reading the weight files, --quant
  // conversion, GPTQ repacking), the caller included; 0 = physical cores.
  size_t threads = 0;
  // .qlm files: hash every tensor against its checksum (reads the whole
  // file). The header, metadata and tokenizer checksums are always checked.
  bool verify_checksums = false;
  // Read every weight file into memory this process allocates, on 2 MiB
  // pages, before returning (false, the default), or map the files, so
  // pages load on first touch and are shared with other processes (true:
  // --mmap; instant start). Reading is the default because decode ran up to
  // 60 % faster from the read copy on two VM types and no slower on a third
  // (loaders/mapped_file.h, docs/benchmarks.md).
  bool mmap = false;
  // Called after each weight matrix is bound (`done` of `total`, the one
  // just bound named): drives a progress bar while --quant converts.
  std::function<void(size_t done, size_t total, const std::string& name)> progress;
  // Called while a weight file is read (mmap false): `done` of `total`
  // bytes of file `path`.
  std::function<void(size_t done, size_t total, const std::string& path)> read_progress = {};
};

class Model {
 public:
  // An HF model directory (config.json, model.safetensors or shards,
  // tokenizer.model, optional generation_config.json), an AutoGPTQ
  // directory (its 4-bit linears repacked into q4 at load) or a .qlm file
  // (mapped, tensors used in place). Throws qlm::Error naming the missing or
  // malformed file / tensor.
  static Model Load(const std::string& dir, const LoadOptions& options = {});

  Model(Model&&) noexcept;
  Model& operator=(Model&&) noexcept;
  ~Model();

  const ModelConfig& config() const;
  const Tokenizer& tokenizer() const;
  const std::string& dir() const;
  // Ids that end generation (generation_config.json's, else config.json's).
  const std::vector<int>& stop_ids() const;
  bool IsStop(int32_t id) const;
  const char* isa() const;         // the kernel table in use
  size_t mapped_bytes() const;     // weight files, read or mapped
  size_t read_bytes() const;       // of those, read into memory (the rest is mapped)
  size_t converted_bytes() const;  // weights converted at load (norms, f16, --quant)

  // Internals for tools in this repository (quantize, bench, info).
  const ModelWeights& weights() const;
  const Transformer& transformer() const;

 private:
  friend class Session;  // holds the Impl, so moving a Model keeps sessions valid
  struct Impl;
  explicit Model(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

struct SessionOptions {
  size_t context = 0;  // most positions the session holds; 0 = max_position_embeddings
  size_t batch = 64;   // prompt tokens per forward batch (M of the prefill matmuls)
  size_t threads = 1;  // worker threads including the caller; 0 = physical cores
  // Storage of the KV cache: f32 (exact), bf16, int8 or sfp8 (one scale per
  // row of head_dim values); see core/kv_cache.h and docs/long-context.md.
  KvType kv_type = KvType::kF32;
  // When generation fills the context: keep the first `keep` tokens
  // (attention sinks), drop the oldest half of the rest and go on
  // (core/context_shift.h). Off: generation stops with kContextFull.
  bool context_shift = false;
  size_t keep = 4;
};

// Called once per generated token with the text it completes (possibly
// empty: part of a multi-byte character). Return false to stop.
using TokenCallback = std::function<bool(int32_t id, std::string_view text)>;

struct GenerateParams {
  SamplingParams sampling;
  int max_tokens = 128;  // tokens to generate; -1 = until a stop token or the context is full
  bool stop_at_eos = true;
  // Constrained decoding. logit_filter sees the logits before sampling (set
  // a logit to -inf to forbid a token). accept_token is asked about each
  // sampled token; false rejects it and the sampler draws again without it.
  std::function<void(std::span<float> logits)> logit_filter;
  std::function<bool(int32_t id)> accept_token;
};

enum class StopReason { kMaxTokens, kStopToken, kCallback, kContextFull };

struct GenerateStats {
  size_t prompt_tokens = 0;  // tokens evaluated before the first sample
  size_t generated = 0;      // tokens sampled (including a final stop token)
  size_t decode_evals = 0;   // single-token forward passes
  double prompt_ms = 0.0;
  double decode_ms = 0.0;  // forward passes of generated tokens
  double sample_ms = 0.0;
  StopReason stop = StopReason::kMaxTokens;
  size_t context_shifts = 0;  // times the context was shifted (SessionOptions::context_shift)
};

class Session {
 public:
  explicit Session(const Model& model, const SessionOptions& options = {});
  Session(Session&&) noexcept;
  ~Session();

  // Appends `tokens` to the sequence and returns the logits of the last one
  // ([vocab]), or of every one ([tokens.size() × vocab], row-major) with
  // all_logits. The view stays valid until the next call. Throws if an id is
  // outside the vocabulary or the context would overflow.
  std::span<const float> Forward(std::span<const int32_t> tokens, bool all_logits = false);

  // Tokenizes `prompt` (BOS first when the session is empty), evaluates it
  // after whatever the session already holds, and samples up to max_tokens
  // tokens, calling on_token for each. The KV cache keeps everything, so a
  // later Generate continues the same conversation.
  GenerateStats Generate(std::string_view prompt, const GenerateParams& params,
                         const TokenCallback& on_token);
  GenerateStats Generate(std::span<const int32_t> prompt_ids, const GenerateParams& params,
                         const TokenCallback& on_token);

  // Forgets the sequence (empty KV cache, position 0).
  void Reset();

  // Drops tokens [keep, keep + discard) from the sequence and the KV cache,
  // moving the later ones down (their keys re-rotated), as context shifting
  // does when the context is full. Throws qlm::UsageError if that range is
  // not inside the evaluated tokens.
  void ShiftContext(size_t keep, size_t discard);

  // Prompt cache (core/prompt_cache.h). Save writes the evaluated tokens
  // and their KV cache to `path` (throws qlm::Error if it cannot). Load, on
  // an empty session, restores a file made by the same model, KV type and
  // context whose tokens are a prefix of `prompt`, and returns how many
  // tokens it restored; 0 (the session left empty) with *why explaining a
  // mismatch, a missing or a corrupt file.
  void SavePromptCache(const std::string& path) const;
  size_t LoadPromptCache(const std::string& path, std::span<const int32_t> prompt,
                         std::string* why);

  // Tokens in the sequence (the KV cache plus a sampled token not yet evaluated).
  std::span<const int32_t> tokens() const;
  size_t position() const;  // tokens evaluated into the KV cache
  size_t context() const;
  size_t kv_bytes() const;       // KV cache bytes at the full context (reserved)
  size_t kv_used_bytes() const;  // KV cache bytes of the positions written so far
  KvType kv_type() const;
  size_t threads() const;

  // While set (non-null), every decode step adds its linears' wall time per
  // shape to *profile (core/forward.h); the caller owns it and clears it.
  // `qlm bench --profile` uses it. Null (the default) turns it off.
  void SetLinearProfile(LinearProfile* profile);
  // The same for prefill batches (Forward with more than one token).
  void SetPrefillLinearProfile(LinearProfile* profile);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace qlm
