// `qlm info [--kernels ISA] [--json]`: the CPU features the kernel registry
// sees, every kernel table compiled in and whether this CPU can run it, the
// table chosen (and why), and which ISA provides each op of it.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "apps/qlm/commands.h"
#include "apps/qlm/load_model.h"
#include "apps/qlm/model_path.h"
#include "core/kv_cache.h"
#include "core/model.h"
#include "core/qlm.h"
#include "core/version.h"
#include "kernels/registry.h"

namespace qlm::cli {
namespace {

using kernels::Isa;
using kernels::KernelTable;
using kernels::Op;

std::vector<std::string> SplitWords(const std::string& s) {
  std::vector<std::string> words;
  size_t i = 0;
  while (i < s.size()) {
    const size_t j = s.find(' ', i);
    const size_t end = j == std::string::npos ? s.size() : j;
    if (end > i) words.push_back(s.substr(i, end - i));
    i = end + 1;
  }
  return words;
}

}  // namespace

// The kernel part of `qlm info` as JSON. Selects the table exactly as the
// engine does (request, else QLM_KERNELS, else the best available ISA) and
// throws qlm::UsageError for an unknown or unavailable ISA.
nlohmann::ordered_json KernelInfo(const std::string& request) {
  const KernelTable& chosen = kernels::SelectTable(request);
  const char* env = std::getenv("QLM_KERNELS");
  std::string selected_by = "best available";
  if (!request.empty()) {
    selected_by = "--kernels";
  } else if (env != nullptr && *env != '\0') {
    selected_by = "QLM_KERNELS";
  }
  nlohmann::ordered_json j;
  j["cpu_features"] = SplitWords(kernels::CpuFeatureString());
  nlohmann::ordered_json tables = nlohmann::ordered_json::array();
  for (int i = 0; i < kernels::kNumIsas; ++i) {
    const Isa isa = static_cast<Isa>(i);
    tables.push_back({{"name", kernels::IsaName(isa)},
                      {"compiled_in", kernels::IsaCompiledIn(isa)},
                      {"available", kernels::IsaAvailable(isa)}});
  }
  j["tables"] = tables;
  j["best"] = kernels::IsaName(kernels::BestIsa());
  j["chosen"] = kernels::IsaName(chosen.isa);
  j["selected_by"] = selected_by;
  nlohmann::ordered_json ops = nlohmann::ordered_json::object();
  for (int i = 0; i < kernels::kNumOps; ++i) {
    const Op op = static_cast<Op>(i);
    ops[kernels::OpName(op)] =
        kernels::OpEntry(chosen, op) != nullptr ? kernels::IsaName(chosen.provider[i]) : "missing";
  }
  j["ops"] = ops;
  return j;
}

// Human-readable rendering of KernelInfo().
void PrintKernelInfo(const nlohmann::ordered_json& k) {
  std::string features;
  for (const auto& f : k["cpu_features"]) features += " " + f.get<std::string>();
  std::printf("cpu features:%s\n", features.empty() ? " (none relevant)" : features.c_str());
  std::printf("kernel tables:\n");
  const std::string chosen = k["chosen"].get<std::string>();
  for (const auto& t : k["tables"]) {
    const std::string name = t["name"].get<std::string>();
    const char* state = !t["compiled_in"].get<bool>() ? "not compiled in (other processor family)"
                        : t["available"].get<bool>()  ? "available"
                                                      : "compiled in, CPU lacks it";
    std::printf("  %-7s %s%s\n", name.c_str(), state, name == chosen ? "  <- chosen" : "");
  }
  std::printf("chosen table: %s (by %s)\n", chosen.c_str(),
              k["selected_by"].get<std::string>().c_str());
  std::printf("ops (provided by):\n");
  for (const auto& [op, isa] : k["ops"].items()) {
    std::printf("  %-15s %s\n", op.c_str(), isa.get<std::string>().c_str());
  }
}

// The model part of `qlm info`: config summary, tensor formats and sizes,
// and the memory the model will use (weights mapped or converted, KV cache
// at `context` tokens; 0 = the model's maximum).
// Resident memory of this process (/proc/self/statm), 0 if unknown.
size_t ResidentBytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  unsigned long long size = 0, resident = 0;
  const int got = std::fscanf(f, "%llu %llu", &size, &resident);
  std::fclose(f);
  return got == 2 ? static_cast<size_t>(resident) * static_cast<size_t>(sysconf(_SC_PAGESIZE)) : 0;
}

// Creates the KV cache for (config, context, type), writes every position of
// every layer, and reports the cache's own count and the resident memory it
// added: the measured form of "global layers × context + local layers ×
// window slots".
nlohmann::ordered_json MeasureKv(const ModelConfig& c, size_t ctx, KvType type) {
  const size_t rss0 = ResidentBytes();
  KvCache kv(c, ctx, type);
  const size_t rss_empty = ResidentBytes();
  const size_t kv_dim = kv.kv_heads() * kv.head_dim(), chunk = 256;
  std::vector<float> k(chunk * kv_dim), v(chunk * kv_dim);
  for (size_t i = 0; i < k.size(); ++i) {
    k[i] = static_cast<float>(i % 97) * 0.01f - 0.3f;
    v[i] = static_cast<float>(i % 89) * -0.02f + 0.5f;
  }
  size_t global_layers = 0, local_layers = 0, window = 0;
  for (size_t l = 0; l < kv.num_layers(); ++l) {
    const LayerKv& L = kv.layer(l);
    if (L.ring) {
      ++local_layers;
      window = L.capacity;
    } else {
      ++global_layers;
    }
    for (size_t p = 0; p < ctx; p += chunk) {
      kv.Write(l, static_cast<int32_t>(p), std::min(chunk, ctx - p), k.data(), v.data());
    }
  }
  const size_t rss1 = ResidentBytes();
  const size_t slots = global_layers * ctx + local_layers * window;
  nlohmann::ordered_json j;
  j["positions_written"] = ctx;
  j["global_layers"] = global_layers;
  j["local_layers"] = local_layers;
  j["window"] = window;
  j["slot_bytes"] = kv.slot_bytes();
  j["formula_bytes"] = slots * kv.slot_bytes();  // (global × ctx + local × window) slots
  j["cache_used_bytes"] = kv.used_bytes();
  j["reserved_bytes"] = kv.bytes();
  j["rss_after_create_bytes"] = rss_empty > rss0 ? rss_empty - rss0 : 0;
  j["rss_growth_bytes"] = rss1 > rss0 ? rss1 - rss0 : 0;
  return j;
}

nlohmann::ordered_json ModelInfo(const std::string& flag, const std::string& kernels,
                                 size_t context, KvType kv_type, bool measure_kv) {
  LoadOptions lo;
  lo.kernels = kernels;
  lo.mmap = true;  // info decodes nothing heavy: no need to read the weights up front
  const std::string dir = ResolveModelDir(flag);
  const Model model = LoadModelWithProgress(dir, lo);
  const ModelConfig& c = model.config();
  nlohmann::ordered_json j;
  j["path"] = dir;
  j["model_type"] = c.model_type;
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_layers"] = c.num_layers;
  j["num_heads"] = c.num_heads;
  j["num_kv_heads"] = c.num_kv_heads;
  j["head_dim"] = c.head_dim;
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["bos_id"] = model.tokenizer().bos_id();
  j["stop_ids"] = model.stop_ids();
  // Tensors by role and format: count, parameters, bytes as held in memory.
  struct Acc {
    uint64_t count = 0, params = 0, bytes = 0;
  };
  std::map<std::string, Acc> by_format;
  nlohmann::ordered_json tensors = nlohmann::ordered_json::array();
  auto add = [&](const std::string& name, const QTensor& t, bool counted) {
    const TensorDesc& d = t.desc;
    tensors.push_back({{"name", name},
                       {"format", FormatName(d.format)},
                       {"shape", {d.rows, d.cols}},
                       {"bytes", d.total_bytes}});
    if (!counted) return;
    Acc& a = by_format[FormatName(d.format)];
    ++a.count;
    a.params += d.rows * d.cols;
    a.bytes += d.total_bytes;
  };
  const ModelWeights& w = model.weights();
  add("embed", w.embed, true);
  add("lm_head", w.lm_head, w.lm_head.data != w.embed.data);
  for (size_t l = 0; l < w.layers.size(); ++l) {
    const LayerWeights& L = w.layers[l];
    const std::string p = "layers." + std::to_string(l) + ".";
    add(p + "wq", L.wq, true);
    add(p + "wk", L.wk, true);
    add(p + "wv", L.wv, true);
    add(p + "wo", L.wo, true);
    add(p + "w_gate", L.w_gate, true);
    add(p + "w_up", L.w_up, true);
    add(p + "w_down", L.w_down, true);
  }
  j["tied_embeddings"] = w.lm_head.data == w.embed.data;
  nlohmann::ordered_json formats = nlohmann::ordered_json::object();
  for (const auto& [name, a] : by_format) {
    formats[name] = {{"tensors", a.count}, {"params", a.params}, {"bytes", a.bytes}};
  }
  j["formats"] = formats;
  j["tensors"] = tensors;
  const size_t ctx = context == 0 ? static_cast<size_t>(c.max_position_embeddings) : context;
  j["memory"] = {{"weights_mapped_bytes", model.mapped_bytes()},
                 {"weights_converted_bytes", model.converted_bytes()},
                 {"kv_cache_context", ctx},
                 {"kv_cache_type", kernels::KvTypeName(kv_type)},
                 {"kv_cache_bytes", KvCache::BytesAt(c, ctx, kv_type)}};
  if (measure_kv) j["memory"]["kv_cache_measured"] = MeasureKv(c, ctx, kv_type);
  return j;
}

void PrintModelInfo(const nlohmann::ordered_json& m) {
  auto mib = [](uint64_t b) { return static_cast<double>(b) / (1024.0 * 1024.0); };
  std::printf("model: %s\n", m["path"].get<std::string>().c_str());
  std::printf(
      "  %s: %d layers, hidden %d, ffn %d, heads %d (kv %d) x %d, vocab %d, max positions %d%s\n",
      m["model_type"].get<std::string>().c_str(), m["num_layers"].get<int>(),
      m["hidden_size"].get<int>(), m["intermediate_size"].get<int>(), m["num_heads"].get<int>(),
      m["num_kv_heads"].get<int>(), m["head_dim"].get<int>(), m["vocab_size"].get<int>(),
      m["max_position_embeddings"].get<int>(),
      m["tied_embeddings"].get<bool>() ? ", tied embeddings" : "");
  std::printf("  weight formats:\n");
  for (const auto& [name, f] : m["formats"].items()) {
    std::printf("    %-6s %4llu tensors, %12llu params, %10.2f MiB\n", name.c_str(),
                static_cast<unsigned long long>(f["tensors"].get<uint64_t>()),
                static_cast<unsigned long long>(f["params"].get<uint64_t>()),
                mib(f["bytes"].get<uint64_t>()));
  }
  const auto& mem = m["memory"];
  std::printf(
      "  memory: weights mapped %.2f MiB, converted %.2f MiB, KV cache %.2f MiB at %llu "
      "tokens of context\n",
      mib(mem["weights_mapped_bytes"].get<uint64_t>()),
      mib(mem["weights_converted_bytes"].get<uint64_t>()),
      mib(mem["kv_cache_bytes"].get<uint64_t>()),
      static_cast<unsigned long long>(mem["kv_cache_context"].get<uint64_t>()));
  std::printf("  KV cache type %s\n", mem["kv_cache_type"].get<std::string>().c_str());
  if (mem.contains("kv_cache_measured")) {
    const auto& k = mem["kv_cache_measured"];
    auto u = [&](const char* key) {
      return static_cast<unsigned long long>(k[key].get<uint64_t>());
    };
    std::printf(
        "  KV measured after writing all %llu positions: %llu global layers x %llu + %llu local "
        "layers x %llu slots x %llu B = %llu B; cache counts %llu B; resident memory grew %llu B "
        "(%llu B right after creation)\n",
        u("positions_written"), u("global_layers"), u("positions_written"), u("local_layers"),
        u("window"), u("slot_bytes"), u("formula_bytes"), u("cache_used_bytes"),
        u("rss_growth_bytes"), u("rss_after_create_bytes"));
  }
}

void AddInfoCommand(CLI::App& app) {
  CLI::App* info = app.add_subcommand("info", "Show CPU features, kernels and model summary");
  struct Options {
    std::string kernels;
    bool json = false;
    std::string model;
    bool no_model = false;
    size_t context = 0;
    std::string kv_type = "f32";
    bool measure_kv = false;
  };
  auto opts = std::make_shared<Options>();
  info->add_option("--kernels", opts->kernels,
                   "Kernel table: scalar, avx2, avx512 or neon (default: QLM_KERNELS, else the "
                   "best this CPU supports)");
  info->add_flag("--json", opts->json, "Print machine-readable JSON");
  info->add_option("-m,--model", opts->model,
                   "Model directory or .qlm file to describe; default: the built-in Austen model");
  info->add_flag("--no-model", opts->no_model, "Show only the CPU and kernel part");
  info->add_option("-c,--ctx-size", opts->context,
                   "Context for the KV-cache size (0 = the model's maximum)")
      ->capture_default_str();
  info->add_option("--kv-type", opts->kv_type,
                   "KV cache storage for the size: f32, bf16, int8, sfp8")
      ->capture_default_str();
  info->add_flag("--measure-kv", opts->measure_kv,
                 "Create the KV cache at -c, write every position and report its bytes and the "
                 "resident memory it added");
  info->callback([opts] {
    const nlohmann::ordered_json k = KernelInfo(opts->kernels);
    nlohmann::ordered_json m;
    if (!opts->no_model)
      m = ModelInfo(opts->model, opts->kernels, opts->context, ParseKvType(opts->kv_type),
                    opts->measure_kv);
    if (opts->json) {
      nlohmann::ordered_json j;
      j["version"] = qlm::Version();
      j["kernels"] = k;
      if (!m.is_null()) j["model"] = m;
      std::printf("%s\n", j.dump(2).c_str());
      return;
    }
    std::printf("qlm %s\n", qlm::Version());
    PrintKernelInfo(k);
    if (!m.is_null()) PrintModelInfo(m);
  });
}

}  // namespace qlm::cli
