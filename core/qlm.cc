#include "core/qlm.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "base/error.h"
#include "core/context_shift.h"
#include "core/forward.h"
#include "core/kv_cache.h"
#include "core/model.h"
#include "core/model_source.h"
#include "core/prompt_cache.h"
#include "core/thread_pool.h"
#include "kernels/registry.h"
#include "loaders/generation_config.h"
#include "loaders/weight_store.h"

namespace qlm {
namespace {

namespace fs = std::filesystem;

double MsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

// ---------------------------------------------------------------- Model

struct Model::Impl {
  std::string dir;
  ModelConfig config;
  std::vector<int> stop_ids;
  const kernels::KernelTable* table = nullptr;
  ModelSource source;  // the mapped files (HF, AutoGPTQ or .qlm)
  BoundWeights bound;
  std::optional<Tokenizer> tokenizer;
  Transformer transformer;  // points at config and bound.w above

  bool IsStop(int32_t id) const {
    return std::find(stop_ids.begin(), stop_ids.end(), id) != stop_ids.end();
  }
};

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;
Model::~Model() = default;

Model Model::Load(const std::string& dir, const LoadOptions& options) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) throw Error("model directory " + dir + " does not exist");
  if (!fs::is_directory(dir, ec) && !LooksLikeQlmFile(dir)) {
    throw Error("model path " + dir +
                " is neither a directory (expected a Hugging Face model folder) nor a .qlm file");
  }
  if (fs::is_directory(dir, ec) && !fs::exists(fs::path(dir) / "config.json", ec)) {
    throw Error("no config.json in " + dir + ": not a Hugging Face model directory");
  }
  auto impl = std::make_unique<Impl>();
  impl->dir = dir;
  // The kernel table first: a bad --kernels fails before any file is mapped.
  impl->table = &kernels::SelectTable(options.kernels);
  std::optional<ThreadPool> pool;
  if (options.threads != 1) pool.emplace(options.threads);
  OpenSourceOptions so;
  so.verify_checksums = options.verify_checksums;
  so.files.residency = options.mmap ? FileResidency::kMapped : FileResidency::kRead;
  so.files.threads = pool ? pool->num_threads() : 1;
  so.files.progress = options.read_progress;
  so.pool = pool ? &*pool : nullptr;
  impl->source = OpenModelSource(dir, so);
  const ModelSource& src = impl->source;
  const bool is_qlm = src.kind == ModelSource::Kind::kQlmFile;
  const std::string config_path =
      is_qlm ? dir + ": embedded config.json" : (fs::path(dir) / "config.json").string();
  try {
    impl->config = ParseHfConfig(src.config_json);
  } catch (const UsageError&) {
    throw;
  } catch (const Error& e) {
    // Name the file with its directory; the parser's messages may already
    // start with "config.json: ".
    const std::string what = e.what();
    throw Error(what.rfind("config.json", 0) == 0 && !is_qlm ? (fs::path(dir) / what).string()
                                                             : config_path + ": " + what);
  }
  const ModelConfig& c = impl->config;
  impl->stop_ids = StopTokenIds(c, src.generation_config_json.empty()
                                       ? GenerationConfig{}
                                       : ParseGenerationConfig(src.generation_config_json));
  impl->tokenizer.emplace(is_qlm ? Tokenizer::FromSerializedProto(src.tokenizer_proto, dir)
                                 : Tokenizer::FromFile(src.tokenizer_path));
  if (impl->tokenizer->vocab_size() > c.vocab_size) {
    throw Error((is_qlm ? "the tokenizer in " : "tokenizer.model in ") + dir + " has " +
                std::to_string(impl->tokenizer->vocab_size()) +
                " pieces but config.json's vocab_size is " + std::to_string(c.vocab_size));
  }
  BindOptions bind;
  bind.quant = options.quant;
  bind.group_size = options.group_size;
  bind.head_quant = options.head_quant;
  bind.prepared = &src.prepared;
  bind.pool = so.pool;
  bind.progress = options.progress;
  impl->bound = BindWeights(c, src.store, dir, bind);

  // Every format the weights use must have a matmul in the chosen table.
  auto check = [&](const QTensor& t) {
    if (impl->table->matmul[static_cast<int>(t.desc.format)] == nullptr) {
      throw Error(std::string("kernel table ") + kernels::IsaName(impl->table->isa) +
                  " has no matmul for format " + FormatName(t.desc.format));
    }
  };
  const ModelWeights& w = impl->bound.w;
  check(w.lm_head);
  for (const LayerWeights& L : w.layers) {
    for (const QTensor* t : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down}) check(*t);
  }
  impl->transformer = MakeTransformer(impl->config, impl->bound.w, *impl->table);
  return Model(std::move(impl));
}

const ModelConfig& Model::config() const { return impl_->config; }
const Tokenizer& Model::tokenizer() const { return *impl_->tokenizer; }
const std::string& Model::dir() const { return impl_->dir; }
const std::vector<int>& Model::stop_ids() const { return impl_->stop_ids; }
bool Model::IsStop(int32_t id) const { return impl_->IsStop(id); }
const char* Model::isa() const { return kernels::IsaName(impl_->table->isa); }
size_t Model::mapped_bytes() const {
  const ModelSource& s = impl_->source;
  return s.store.mapped_bytes() + (s.qlm ? s.qlm->mapped_bytes() : 0);
}
size_t Model::read_bytes() const {
  const ModelSource& s = impl_->source;
  return s.store.read_bytes() + (s.qlm ? s.qlm->read_bytes() : 0);
}
size_t Model::converted_bytes() const {
  return impl_->bound.owned_bytes + impl_->source.repacked_bytes;
}
const ModelWeights& Model::weights() const { return impl_->bound.w; }
const Transformer& Model::transformer() const { return impl_->transformer; }

// ---------------------------------------------------------------- Session

struct Session::Impl {
  Impl(const Model::Impl& m, const SessionOptions& o, size_t ctx, size_t n_threads)
      : model(&m),
        context(ctx),
        batch(o.batch),
        kv(m.config, ctx, o.kv_type),
        scratch(m.config, o.batch),
        detok(*m.tokenizer) {
    if (n_threads > 1) pool = std::make_unique<ThreadPool>(n_threads);
    context_shift = o.context_shift;
    keep = o.keep;
    for (const LayerWeights& L : m.bound.w.layers) {
      layer_rope.push_back(L.local_rope ? &m.transformer.rope_local : &m.transformer.rope_global);
    }
    tokens.reserve(ctx + 1);
    logits.resize(static_cast<size_t>(m.config.vocab_size));
  }

  const Model::Impl* model;
  size_t context;
  size_t batch;
  KvCache kv;
  ForwardScratch scratch;
  std::unique_ptr<ThreadPool> pool;
  std::vector<int32_t> tokens;  // every token of the sequence
  size_t evaluated = 0;         // tokens[0, evaluated) are in the KV cache
  std::vector<float> logits;    // [rows × vocab] of the last Forward
  StreamingDetokenizer detok;
  size_t detok_fed = 0;  // tokens[0, detok_fed) pushed into detok
  bool context_shift = false;
  size_t keep = 0;
  std::vector<const RopeFreqs*> layer_rope;  // per layer, for context shifts

  void Shift(size_t keep_n, size_t discard) {
    if (discard == 0 || keep_n + discard > evaluated) {
      throw UsageError("context shift: cannot drop tokens [" + std::to_string(keep_n) + ", " +
                       std::to_string(keep_n + discard) + ") of " + std::to_string(evaluated) +
                       " evaluated");
    }
    ShiftKvCache(kv, layer_rope, keep_n, discard);
    const auto first = tokens.begin() + static_cast<std::ptrdiff_t>(keep_n);
    tokens.erase(first, first + static_cast<std::ptrdiff_t>(discard));
    evaluated -= discard;
    // The detokenizer has seen every token already; only the index moves.
    detok_fed = detok_fed >= keep_n + discard ? detok_fed - discard : std::min(detok_fed, keep_n);
  }

  // Context full during generation: keep the sinks, drop half of the rest.
  void ShiftForGeneration() {
    const size_t keep_n = std::min(keep, evaluated / 2);
    Shift(keep_n, std::max<size_t>(1, (evaluated - keep_n) / 2));
  }

  // Evaluates tokens[evaluated, end) and writes the logits of the last
  // `rows` of them into `logits`.
  void EvaluatePending(size_t rows) {
    const Transformer& m = model->transformer;
    const size_t vocab = static_cast<size_t>(m.config->vocab_size);
    const size_t total = tokens.size() - evaluated;
    if (logits.size() < rows * vocab) logits.resize(rows * vocab);
    // Index, within the pending run, of the first token whose logits are kept.
    const size_t first_out = total - rows;
    for (size_t start = 0; start < total; start += batch) {
      const size_t n = std::min(batch, total - start);
      float* out = nullptr;
      size_t chunk_first = n;
      if (start + n > first_out) {
        chunk_first = first_out > start ? first_out - start : 0;
        out = logits.data() + (start + chunk_first - first_out) * vocab;
      }
      ForwardBatch(m, kv, scratch, pool.get(), tokens.data() + evaluated + start, n,
                   static_cast<int32_t>(evaluated + start), out, chunk_first);
    }
    evaluated = tokens.size();
  }
};

Session::Session(const Model& model, const SessionOptions& options) {
  const ModelConfig& c = model.config();
  size_t ctx = options.context;
  if (ctx == 0) ctx = static_cast<size_t>(std::max(0, c.max_position_embeddings));
  if (ctx == 0) {
    throw UsageError("no context size: config.json has no max_position_embeddings; set one");
  }
  if (options.batch == 0) throw UsageError("batch size must be at least 1");
  const size_t n_threads = options.threads == 0 ? PhysicalCoreCount() : options.threads;
  impl_ = std::make_unique<Impl>(*model.impl_, options, ctx, n_threads);
}

Session::Session(Session&&) noexcept = default;
Session::~Session() = default;

std::span<const float> Session::Forward(std::span<const int32_t> tokens, bool all_logits) {
  Impl& s = *impl_;
  const size_t vocab = static_cast<size_t>(s.model->config.vocab_size);
  if (tokens.empty()) throw UsageError("Forward: no tokens given");
  for (const int32_t id : tokens) {
    if (id < 0 || static_cast<size_t>(id) >= vocab) {
      throw UsageError("token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                       std::to_string(vocab) + ")");
    }
  }
  const size_t total = s.tokens.size() - s.evaluated + tokens.size();
  if (s.evaluated + total > s.context) {
    throw Error("context full: " + std::to_string(s.evaluated) + " tokens held + " +
                std::to_string(total) + " new exceed the context of " + std::to_string(s.context));
  }
  s.tokens.insert(s.tokens.end(), tokens.begin(), tokens.end());
  const size_t rows = all_logits ? tokens.size() : 1;
  s.EvaluatePending(rows);
  return {s.logits.data(), rows * vocab};
}

GenerateStats Session::Generate(std::string_view prompt, const GenerateParams& params,
                                const TokenCallback& on_token) {
  const bool add_bos = impl_->tokens.empty();
  const std::vector<int> ids = impl_->model->tokenizer->Encode(prompt, add_bos);
  const std::vector<int32_t> ids32(ids.begin(), ids.end());
  return Generate(std::span<const int32_t>(ids32), params, on_token);
}

GenerateStats Session::Generate(std::span<const int32_t> prompt_ids, const GenerateParams& params,
                                const TokenCallback& on_token) {
  Impl& s = *impl_;
  const Model::Impl& model = *s.model;
  const size_t vocab = static_cast<size_t>(model.config.vocab_size);
  if (params.max_tokens < -1) {
    throw UsageError("max tokens must be >= -1 (-1 = until a stop token), got " +
                     std::to_string(params.max_tokens));
  }
  // Logit rows past the tokenizer's pieces (a vocab_size padded for
  // alignment, or a random-weight model with a small tokenizer) have no text:
  // they are never sampled.
  const size_t sample_vocab = std::min(vocab, static_cast<size_t>(model.tokenizer->vocab_size()));
  Sampler sampler(params.sampling, sample_vocab);
  GenerateStats st;
  using Clock = std::chrono::steady_clock;

  // ---- Prompt: evaluate whatever is pending plus the new ids at once.
  const size_t pending = s.tokens.size() - s.evaluated;
  st.prompt_tokens = pending + prompt_ids.size();
  if (st.prompt_tokens == 0) throw UsageError("empty prompt: nothing to continue from");
  if (s.evaluated + st.prompt_tokens > s.context) {
    throw UsageError("the prompt needs " + std::to_string(s.evaluated + st.prompt_tokens) +
                     " tokens of context but the context holds " + std::to_string(s.context) +
                     " (raise the context size, e.g. -c)");
  }
  auto t0 = Clock::now();
  if (prompt_ids.empty()) {
    s.EvaluatePending(1);  // just the token sampled last time
  } else {
    Forward(prompt_ids);
  }
  st.prompt_ms = MsSince(t0);
  // The detokenizer sees the prompt too (output discarded), so generated text
  // continues it correctly (leading spaces, characters split across tokens).
  for (; s.detok_fed < s.tokens.size(); ++s.detok_fed) s.detok.Push(s.tokens[s.detok_fed]);

  // ---- Generation: sample from s.logits, evaluate the token, repeat.
  float* logits = s.logits.data();
  while (params.max_tokens < 0 || st.generated < static_cast<size_t>(params.max_tokens)) {
    t0 = Clock::now();
    if (params.logit_filter) params.logit_filter(std::span<float>(logits, vocab));
    sampler.Penalize(logits, s.tokens);
    int32_t id = sampler.Pick(logits);
    if (params.accept_token) {
      size_t rejected = 0;
      while (!params.accept_token(id)) {
        if (++rejected >= sample_vocab) throw Error("accept_token rejected every token");
        logits[id] = -std::numeric_limits<float>::infinity();
        id = sampler.Pick(logits);
      }
    }
    st.sample_ms += MsSince(t0);
    s.tokens.push_back(id);
    ++st.generated;
    const std::string text = s.detok.Push(id);
    ++s.detok_fed;
    if (params.stop_at_eos && model.IsStop(id)) {
      st.stop = StopReason::kStopToken;
      return st;
    }
    if (on_token && !on_token(id, text)) {
      st.stop = StopReason::kCallback;
      return st;
    }
    if (params.max_tokens >= 0 && st.generated >= static_cast<size_t>(params.max_tokens)) break;
    if (s.evaluated >= s.context) {
      if (!s.context_shift) {
        st.stop = StopReason::kContextFull;
        return st;
      }
      s.ShiftForGeneration();
      ++st.context_shifts;
    }
    t0 = Clock::now();
    s.EvaluatePending(1);
    st.decode_ms += MsSince(t0);
    ++st.decode_evals;
  }
  st.stop = StopReason::kMaxTokens;
  return st;
}

void Session::Reset() {
  Impl& s = *impl_;
  s.kv.Clear();
  s.tokens.clear();
  s.evaluated = 0;
  s.detok.Reset();
  s.detok_fed = 0;
}

void Session::ShiftContext(size_t keep, size_t discard) { impl_->Shift(keep, discard); }

void Session::SavePromptCache(const std::string& path) const {
  const Impl& s = *impl_;
  const Model::Impl& m = *s.model;
  qlm::SavePromptCache(path, ModelIdentity(m.config, m.bound.w), s.kv,
                       std::span<const int32_t>(s.tokens.data(), s.evaluated));
}

size_t Session::LoadPromptCache(const std::string& path, std::span<const int32_t> prompt,
                                std::string* why) {
  Impl& s = *impl_;
  if (!s.tokens.empty()) throw UsageError("LoadPromptCache needs an empty session (Reset first)");
  const Model::Impl& m = *s.model;
  std::vector<int32_t> ids;
  std::string reason;
  const size_t n =
      qlm::LoadPromptCache(path, ModelIdentity(m.config, m.bound.w), s.kv, prompt, &ids, &reason);
  if (why != nullptr) *why = reason;
  if (n == 0) return 0;
  s.tokens = std::move(ids);
  s.tokens.reserve(s.context + 1);
  s.evaluated = s.tokens.size();
  return n;
}

std::span<const int32_t> Session::tokens() const { return impl_->tokens; }
size_t Session::position() const { return impl_->evaluated; }
size_t Session::context() const { return impl_->context; }
size_t Session::kv_bytes() const { return impl_->kv.bytes(); }
size_t Session::kv_used_bytes() const { return impl_->kv.used_bytes(); }
KvType Session::kv_type() const { return impl_->kv.kv_type(); }
size_t Session::threads() const { return impl_->pool ? impl_->pool->num_threads() : 1; }

void Session::SetLinearProfile(LinearProfile* profile) { impl_->scratch.profile = profile; }

void Session::SetPrefillLinearProfile(LinearProfile* profile) {
  impl_->scratch.prefill_profile = profile;
}

}  // namespace qlm
