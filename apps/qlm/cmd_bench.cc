// qlm bench: prompt-processing (pp) and generation (tg) throughput, as
// llama-bench measures them: token ids are fed directly (no tokenization),
// the next decode token is the argmax (no sampler), and each test is repeated
// -r times (mean ± sample std). Decode is also reported against the
// machine's read bandwidth, measured here with the same thread count.
//   qlm bench -m DIR [--quant Q] [-p 512] [-n 128] [-t T] [-r 5] [--json]
//             [--paired] [--profile] [--kernels ISA] [--kv-type f32|bf16|int8|sfp8]
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "apps/qlm/commands.h"
#include "apps/qlm/load_model.h"
#include "apps/qlm/model_path.h"
#include "apps/qlm/quant_flags.h"
#include "base/error.h"
#include "core/forward.h"
#include "core/kv_cache.h"
#include "core/mem_bandwidth.h"
#include "core/model.h"
#include "core/qlm.h"
#include "core/thread_pool.h"

namespace qlm::cli {
namespace {

struct BenchArgs {
  std::string model;
  QuantFlags quant;
  int n_prompt = 512;
  int n_gen = 128;
  int threads = -1;
  int reps = 5;
  size_t batch = 0;  // 0 = the whole prompt in one batch
  bool json = false;
  bool paired = false;   // a probe slice after every decoded token
  bool profile = false;  // per-shape wall time of the linears (pp and tg)
  bool mmap = false;
  std::string kernels;
  std::string kv_type = "f32";
};

struct Stat {
  double mean = 0.0, stddev = 0.0;
};

Stat MeanStd(const std::vector<double>& v) {
  Stat s;
  if (v.empty()) return s;
  for (double x : v) s.mean += x;
  s.mean /= static_cast<double>(v.size());
  if (v.size() > 1) {
    double ss = 0.0;
    for (double x : v) ss += (x - s.mean) * (x - s.mean);
    s.stddev = std::sqrt(ss / static_cast<double>(v.size() - 1));
  }
  return s;
}

double Seconds(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

int32_t Argmax(std::span<const float> logits) {
  return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

struct WeightTotals {
  size_t bytes = 0;         // every weight tensor once (a tied embedding once)
  uint64_t params = 0;      // elements of those tensors
  size_t decode_bytes = 0;  // weights one decode token reads
};

WeightTotals CountWeights(const Model& model) {
  const ModelWeights& w = model.weights();
  WeightTotals t;
  auto add = [&](const QTensor& q) {
    t.bytes += q.desc.total_bytes;
    t.params += q.desc.rows * q.desc.cols;
    t.decode_bytes += q.desc.total_bytes;
  };
  for (const LayerWeights& l : w.layers) {
    for (const QTensor* q : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) add(*q);
  }
  add(w.lm_head);
  // The embedding: one row per token read; its bytes count once if tied.
  if (w.embed.data != w.lm_head.data) {
    t.bytes += w.embed.desc.total_bytes;
    t.params += w.embed.desc.rows * w.embed.desc.cols;
  }
  t.decode_bytes += w.embed.desc.row_bytes;
  const ModelConfig& c = model.config();
  const uint64_t norms_per_layer = 4;
  t.params += static_cast<uint64_t>(c.num_layers) * norms_per_layer * c.hidden_size + c.hidden_size;
  return t;
}

// Mean KV bytes (K and V rows in `kv` storage, with their per-row scales) a
// decode token reads over positions [start, start + n).
double KvBytesPerToken(const ModelConfig& c, KvType kv, size_t start, size_t n) {
  if (n == 0) return 0.0;
  double total = 0.0;
  const double row_bytes = static_cast<double>(c.head_dim * kernels::KvElemBytes(kv)) +
                           (kernels::KvHasScale(kv) ? sizeof(float) : 0.0);
  const double per_pos = 2.0 * c.num_kv_heads * row_bytes;
  for (int l = 0; l < c.num_layers; ++l) {
    const bool sliding = l < static_cast<int>(c.layer_is_sliding.size()) && c.layer_is_sliding[l];
    for (size_t i = 0; i < n; ++i) {
      size_t seen = start + i + 1;
      if (sliding && c.sliding_window > 0) seen = std::min(seen, size_t(c.sliding_window));
      total += static_cast<double>(seen) * per_pos;
    }
  }
  return total / static_cast<double>(n);
}

std::string HumanBytes(double b) {
  if (b >= 1e9) return fmt::format("{:.2f} GB", b / 1e9);
  if (b >= 1e6) return fmt::format("{:.2f} MB", b / 1e6);
  return fmt::format("{:.2f} KB", b / 1e3);
}

std::string HumanCount(double n) {
  if (n >= 1e9) return fmt::format("{:.2f} B", n / 1e9);
  if (n >= 1e6) return fmt::format("{:.2f} M", n / 1e6);
  return fmt::format("{:.2f} K", n / 1e3);
}

// --profile: the linears' wall time per shape over the timed repetitions.
// Decode (tg): per token, against the decode time and the read-bandwidth
// probe. Prefill (pp): per prompt, against the prefill time, in GFLOP/s.
struct RunProfile {
  LinearProfile linears;
  double seconds = 0.0;    // timed forward time, all repetitions
  size_t units = 0;        // tg: tokens; pp: prompts
  double bandwidth = 0.0;  // tg only: mean probe of those repetitions, B/s
  std::string test;
  bool prefill = false;
};

void PrintProfile(const RunProfile& p, size_t threads, bool json) {
  const double units = static_cast<double>(p.units);
  const double total_ns = p.seconds * 1e9;
  const char* unit = p.prefill ? "prompt" : "token";
  std::vector<const LinearProfileEntry*> entries;
  for (size_t i = 0; i < p.linears.size; ++i) entries.push_back(&p.linears.entries[i]);
  if (p.linears.other.calls > 0) entries.push_back(&p.linears.other);
  double linear_ns = 0.0;
  for (const LinearProfileEntry* e : entries) linear_ns += static_cast<double>(e->ns);
  if (!json) {
    if (p.prefill) {
      std::printf(
          "Prefill linears, %s, %zu threads (wall time of each parallel loop over %zu timed "
          "prompts; GFLOP/s = 2 · tokens · rows · K / time):\n\n",
          p.test.c_str(), threads, p.units);
      std::printf("| linear (rows × K) | format | loops/prompt | ms/prompt | share | GFLOP/s |\n");
      std::printf("| --- | --- | ---: | ---: | ---: | ---: |\n");
    } else {
      std::printf(
          "Decode linears, %s, %zu threads (wall time of each parallel loop over %zu timed "
          "tokens; GB/s of weight bytes; probe %.1f GB/s):\n\n",
          p.test.c_str(), threads, p.units, p.bandwidth / 1e9);
      std::printf(
          "| linear (rows × K) | format | loops/token | ms/token | share | GB/s | of probe |\n");
      std::printf("| --- | --- | ---: | ---: | ---: | ---: | ---: |\n");
    }
  }
  for (const LinearProfileEntry* e : entries) {
    const bool other = e == &p.linears.other;
    const double ns = static_cast<double>(e->ns);
    const double gbps = ns > 0 ? static_cast<double>(e->bytes) / ns : 0.0;
    const double gflops = ns > 0
                              ? 2.0 * static_cast<double>(e->act_rows) *
                                    static_cast<double>(e->rows) * static_cast<double>(e->cols) / ns
                              : 0.0;
    const std::string shape =
        other ? std::string("other shapes") : fmt::format("{} × {}", e->rows, e->cols);
    const double loops = static_cast<double>(e->calls) / units, ms = ns / 1e6 / units;
    if (json) {
      nlohmann::json j;
      j["profile"] = "linear";
      j["test"] = p.test;
      j["threads"] = threads;
      j["rows"] = other ? nlohmann::json(nullptr) : nlohmann::json(e->rows);
      j["cols"] = other ? nlohmann::json(nullptr) : nlohmann::json(e->cols);
      j["format"] = other ? "-" : FormatName(e->format);
      j[fmt::format("loops_per_{}", unit)] = loops;
      j[fmt::format("ms_per_{}", unit)] = ms;
      j["share"] = ns / total_ns;
      if (p.prefill) {
        j["gflop_per_s"] = other ? nlohmann::json(nullptr) : nlohmann::json(gflops);
      } else {
        j["gb_per_s"] = gbps;
        j["bandwidth_fraction"] = gbps * 1e9 / p.bandwidth;
      }
      std::printf("%s\n", j.dump().c_str());
    } else if (p.prefill) {
      std::printf("| %s | %s | %.1f | %.3f | %.1f %% | %s |\n", shape.c_str(),
                  other ? "-" : FormatName(e->format), loops, ms, 100.0 * ns / total_ns,
                  other ? "-" : fmt::format("{:.1f}", gflops).c_str());
    } else {
      std::printf("| %s | %s | %.1f | %.3f | %.1f %% | %.1f | %.1f %% |\n", shape.c_str(),
                  other ? "-" : FormatName(e->format), loops, ms, 100.0 * ns / total_ns, gbps,
                  100.0 * gbps * 1e9 / p.bandwidth);
    }
  }
  const double rest_ns = std::max(0.0, total_ns - linear_ns);
  if (json) {
    nlohmann::json j;
    j["profile"] = "rest";
    j["test"] = p.test;
    j["threads"] = threads;
    j[fmt::format("ms_per_{}", unit)] = rest_ns / 1e6 / units;
    j["share"] = rest_ns / total_ns;
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf(
        "| everything else (embedding, norms, attention, RoPE, residual adds) | | | %.3f | "
        "%.1f %% |%s\n",
        rest_ns / 1e6 / units, 100.0 * rest_ns / total_ns, p.prefill ? " |" : " | |");
  }
}

void Bench(const BenchArgs& a) {
  if (a.n_prompt < 0) throw UsageError("-p/--n-prompt must be >= 0");
  if (a.n_gen < 0) throw UsageError("-n/--n-gen must be >= 0");
  if (a.n_prompt == 0 && a.n_gen == 0) throw UsageError("nothing to run: -p and -n are both 0");
  if (a.reps < 1) throw UsageError("-r/--repetitions must be >= 1, got " + std::to_string(a.reps));
  if (a.threads == 0 || a.threads < -1) {
    throw UsageError("-t/--threads must be >= 1 (or -1 for every physical core), got " +
                     std::to_string(a.threads));
  }
  LoadOptions lo;
  lo.mmap = a.mmap;
  lo.kernels = a.kernels;
  const KvType kv_type = ParseKvType(a.kv_type);  // fail before loading
  lo.quant = ParseQuantName(a.quant.quant, "--quant");
  lo.group_size = CheckGroupSize(a.quant.group_size, lo.quant);
  const std::string dir = ResolveModelDir(a.model);
  const Model model = LoadModelWithProgress(dir, lo);
  const ModelConfig& c = model.config();

  const size_t threads = a.threads > 0 ? static_cast<size_t>(a.threads) : PhysicalCoreCount();
  SessionOptions so;
  so.threads = threads;
  so.context = static_cast<size_t>(std::max(a.n_prompt, a.n_gen)) + 1;
  so.batch = a.batch > 0 ? a.batch : static_cast<size_t>(std::max(a.n_prompt, 1));
  so.kv_type = kv_type;
  Session session(model, so);

  const WeightTotals wt = CountWeights(model);
  const std::string format =
      FormatName(model.weights().layers.empty() ? model.weights().lm_head.desc.format
                                                : model.weights().layers[0].wq.desc.format);
  std::mt19937 rng(1234);
  std::uniform_int_distribution<int32_t> dist(0, c.vocab_size - 1);

  // The read-bandwidth ceiling is re-measured right before every tg
  // repetition (see ReadBandwidthProbe): each repetition is judged against
  // the bandwidth of its own moment.
  std::unique_ptr<ThreadPool> probe_pool;
  std::unique_ptr<ReadBandwidthProbe> probe;
  const kernels::KernelTable& table = kernels::SelectTable(model.isa());
  if (a.n_gen > 0) {
    probe_pool = std::make_unique<ThreadPool>(threads);
    probe = std::make_unique<ReadBandwidthProbe>(*probe_pool);
  }

  RunProfile pp_profile, profile;
  struct Row {
    std::string test;
    Stat tps;
    double bytes_per_token = 0.0;
    Stat bw_fraction, bandwidth;  // tg only
    Stat bw_fraction_paired;      // tg only: see ReadBandwidthProbe::Stream
  };
  std::vector<Row> rows;

  if (a.n_prompt > 0) {
    std::vector<int32_t> ids(static_cast<size_t>(a.n_prompt));
    std::vector<double> tps;
    for (int r = 0; r <= a.reps; ++r) {  // r == 0: warm-up
      for (int32_t& id : ids) id = dist(rng);
      session.Reset();
      session.SetPrefillLinearProfile(a.profile && r > 0 ? &pp_profile.linears : nullptr);
      const auto t0 = std::chrono::steady_clock::now();
      session.Forward(ids);
      const double s = Seconds(t0);
      if (r == 0) continue;
      tps.push_back(static_cast<double>(ids.size()) / s);
      pp_profile.seconds += s;
      ++pp_profile.units;
    }
    session.SetPrefillLinearProfile(nullptr);
    rows.push_back({fmt::format("pp{}", a.n_prompt), MeanStd(tps), 0.0, {}, {}, {}});
    pp_profile.test = rows.back().test;
    pp_profile.prefill = true;
  }
  if (a.n_gen > 0) {
    const double bytes_per_token = static_cast<double>(wt.decode_bytes) +
                                   KvBytesPerToken(c, kv_type, 0, static_cast<size_t>(a.n_gen));
    const size_t slice_bytes = static_cast<size_t>(bytes_per_token);
    std::vector<double> tps, bws, fractions, paired;
    for (int r = 0; r <= a.reps; ++r) {  // r == 0: warm-up
      const double bw = probe->Measure(table, 3);
      session.Reset();
      session.SetLinearProfile(a.profile && r > 0 ? &profile.linears : nullptr);
      int32_t tok = dist(rng);
      // Each token is timed alone; with --paired it is followed, untimed, by
      // a probe slice of the same bytes.
      double s = 0.0, probe_s = 0.0;
      for (int i = 0; i < a.n_gen; ++i) {
        // The greedy pick is sampling, which llama-bench leaves out too.
        const auto t0 = std::chrono::steady_clock::now();
        const std::span<const float> logits = session.Forward(std::span(&tok, 1));
        s += Seconds(t0);
        tok = Argmax(logits);
        if (a.paired) probe_s += probe->Stream(table, slice_bytes);
      }
      if (r == 0) continue;
      profile.seconds += s;
      profile.units += static_cast<size_t>(a.n_gen);
      tps.push_back(static_cast<double>(a.n_gen) / s);
      bws.push_back(bw);
      fractions.push_back(tps.back() * bytes_per_token / bw);
      std::string paired_note;
      if (a.paired) {
        paired.push_back(probe_s / s);
        paired_note = fmt::format(", paired {:.1f} %", 100.0 * paired.back());
      }
      spdlog::info("tg repetition {}: {:.2f} t/s, read bandwidth {:.2f} GB/s, {:.1f} %{}", r,
                   tps.back(), bw / 1e9, 100.0 * fractions.back(), paired_note);
    }
    session.SetLinearProfile(nullptr);
    rows.push_back({fmt::format("tg{}", a.n_gen), MeanStd(tps), bytes_per_token, MeanStd(fractions),
                    MeanStd(bws), MeanStd(paired)});
    profile.bandwidth = rows.back().bandwidth.mean;
    profile.test = rows.back().test;
  }

  const std::string name = c.model_type;
  if (a.json) {
    for (const Row& r : rows) {
      nlohmann::json j;
      j["model"] = dir;
      j["model_type"] = name;
      j["size_bytes"] = wt.bytes;
      j["params"] = wt.params;
      j["format"] = format;
      j["isa"] = model.isa();
      j["kv_type"] = a.kv_type;
      j["mmap"] = model.read_bytes() < model.mapped_bytes();  // some file mapped
      j["threads"] = threads;
      j["test"] = r.test;
      j["tokens_per_s"] = r.tps.mean;
      j["stddev"] = r.tps.stddev;
      j["bytes_per_token"] = r.bytes_per_token;
      j["bandwidth_fraction"] = r.bw_fraction.mean;
      j["bandwidth_fraction_stddev"] = r.bw_fraction.stddev;
      j["read_bandwidth"] = r.bandwidth.mean;
      if (a.paired && r.bytes_per_token > 0) {
        j["bandwidth_fraction_paired"] = r.bw_fraction_paired.mean;
        j["bandwidth_fraction_paired_stddev"] = r.bw_fraction_paired.stddev;
      } else {
        j["bandwidth_fraction_paired"] = nullptr;
        j["bandwidth_fraction_paired_stddev"] = nullptr;
      }
      j["repetitions"] = a.reps;
      std::printf("%s\n", j.dump().c_str());
    }
  } else {
    std::printf("| model | size | params | format | ISA | threads | test | t/s | bandwidth |\n");
    std::printf("| --- | ---: | ---: | --- | --- | ---: | --- | ---: | ---: |\n");
    for (const Row& r : rows) {
      std::string bw = "-";
      if (r.bytes_per_token > 0) {
        bw = fmt::format("{:.1f} ± {:.1f} % of {:.1f} GB/s", 100.0 * r.bw_fraction.mean,
                         100.0 * r.bw_fraction.stddev, r.bandwidth.mean / 1e9);
        if (a.paired) {
          bw += fmt::format("; paired {:.1f} ± {:.1f} %", 100.0 * r.bw_fraction_paired.mean,
                            100.0 * r.bw_fraction_paired.stddev);
        }
      }
      std::printf("| %s | %s | %s | %s | %s | %zu | %s | %.2f ± %.2f | %s |\n", name.c_str(),
                  HumanBytes(static_cast<double>(wt.bytes)).c_str(),
                  HumanCount(static_cast<double>(wt.params)).c_str(), format.c_str(), model.isa(),
                  threads, r.test.c_str(), r.tps.mean, r.tps.stddev, bw.c_str());
    }
  }
  for (const RunProfile* p : {&pp_profile, &profile}) {
    if (!a.profile || p->units == 0) continue;
    if (!a.json) std::printf("\n");
    PrintProfile(*p, threads, a.json);
  }
  std::fflush(stdout);
}

}  // namespace

void AddBenchCommand(CLI::App& app) {
  auto a = std::make_shared<BenchArgs>();
  CLI::App* cmd = app.add_subcommand(
      "bench", "Measure prompt-processing (pp) and generation (tg) throughput in tokens/s");
  cmd->add_option("-m,--model", a->model,
                  "Model directory (Hugging Face layout); default: the built-in Austen model");
  AddQuantFlags(cmd, a->quant);
  cmd->add_option("-p,--n-prompt", a->n_prompt, "Prompt tokens per pp test (0 = skip)")
      ->capture_default_str();
  cmd->add_option("-n,--n-gen", a->n_gen, "Decode tokens per tg test (0 = skip)")
      ->capture_default_str();
  cmd->add_option("-t,--threads", a->threads, "Threads (-1 = physical cores)")
      ->capture_default_str();
  cmd->add_option("-r,--repetitions", a->reps, "Repetitions of each test")->capture_default_str();
  cmd->add_option("-b,--batch-size", a->batch,
                  "Prompt tokens per forward batch (0 = the whole prompt)")
      ->capture_default_str();
  cmd->add_flag("--json", a->json, "One JSON object per test and line instead of a table");
  cmd->add_flag("--paired", a->paired,
                "After every decoded token, stream the same bytes through the bandwidth probe "
                "(untimed) and also report decode against those streams "
                "(bandwidth_fraction_paired): robust where the machine's bandwidth moves "
                "between moments; doubles tg time and evicts caches between tokens");
  cmd->add_flag("--profile", a->profile,
                "Also print the linears' wall time per shape over the timed repetitions: for "
                "tg ms per token, share of decode time, GB/s of weight bytes and its fraction "
                "of the read-bandwidth probe; for pp ms per prompt, share of prefill time and "
                "GFLOP/s");
  AddMmapFlag(cmd, a->mmap);
  cmd->add_option("--kernels", a->kernels,
                  "Kernel table: scalar, avx2, avx512, neon (default: best for this CPU)");
  cmd->add_option("--kv-type", a->kv_type, "KV cache storage: f32, bf16, int8 or sfp8")
      ->capture_default_str();
  cmd->callback([a] { Bench(*a); });
}

}  // namespace qlm::cli
