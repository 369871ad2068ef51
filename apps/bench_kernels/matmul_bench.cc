// Matmul microbenchmarks at Gemma-2-2B shapes: y[M×N] = x[M×K] · W[N×K]ᵀ,
// single thread, for decode (M = 1) and prefill (M = 64), every weight format
// × every table this CPU runs, f32 activations (matmul) and, for int8 and q4,
// int8 activations (matmul_q8, quantize_acts included in the timing).
//
// Decode streams every weight byte once per token, so the numbers that matter
// are GB/s of weight bytes (data + scales + zeros) and that rate as a
// fraction of the read-bandwidth probe. int8/q4 9216×2304 tensors fit in the
// 32 MB L3 of the machine this was written on, so each benchmark rotates
// through enough copies of the weight tensor (>= 128 MiB, >= 4× L3) that
// every call streams from DRAM as real decode does. GFLOP/s = 2·M·N·K / time.
// Rates use CPU time; the `_best` counters use the fastest single call.
// Decode (M = 1) also reports `bw_frac_paired`: wall time of all calls
// against a probe stream of the same bytes run right after each call, the
// number to read on a machine shared with other work, whose bandwidth
// drifts between seconds.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "apps/bench_kernels/bandwidth.h"
#include "apps/bench_kernels/matmul_bench.h"
#include "kernels/registry.h"
#include "quant/format.h"
#include "quant/quantize.h"

namespace qlm::bench {
namespace {

using kernels::Isa;
using kernels::KernelTable;

[[noreturn]] void BadEnv(const char* name, const char* value, const char* expected) {
  std::fprintf(stderr, "error: %s=\"%s\": expected %s\n", name, value, expected);
  std::exit(2);
}

// Decimal digits at p (at least one, at most 12: no overflow), advancing p
// past them; false if there are none.
bool ParseCount(const char*& p, size_t* out) {
  size_t v = 0, digits = 0;
  for (; *p >= '0' && *p <= '9' && digits < 12; ++p, ++digits) v = v * 10 + (*p - '0');
  *out = v;
  return digits > 0 && !(*p >= '0' && *p <= '9');
}

// Bytes the copies of one weight tensor add up to. QLM_BENCH_ROTATION_MIB
// overrides the 128 MiB; 0 keeps one copy, so a tensor smaller than the
// caches is timed cache-resident: the compute ceiling of a decoder.
size_t RotationBytes() {
  const char* e = std::getenv("QLM_BENCH_ROTATION_MIB");
  if (e == nullptr || *e == '\0') return size_t{128} << 20;
  const char* p = e;
  size_t mib = 0;
  if (!ParseCount(p, &mib) || *p != '\0' || mib > (size_t{1} << 20)) {
    BadEnv("QLM_BENCH_ROTATION_MIB", e, "a number of MiB from 0 to 1048576");
  }
  return mib << 20;
}

// Fast deterministic uniform floats in [-1, 1) (xorshift64*).
struct Rng {
  uint64_t s = 0x9E3779B97F4A7C15ull;
  float Next() {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    const uint64_t r = s * 0x2545F4914F6CDD1Dull;
    return static_cast<float>(static_cast<int64_t>(r) >> 40) * 0x1p-23f;
  }
};

size_t WeightBytes(const TensorDesc& d) { return d.data_bytes + d.scales_bytes + d.zeros_bytes; }

// One random weight tensor and enough copies of it to rotate through.
struct WeightSet {
  Format format;
  size_t n, k;
  std::vector<QuantizedTensor> copies;
  size_t bytes = 0;  // weight bytes of one copy
};

QuantizeOptions Options(Format f) {
  QuantizeOptions o;
  if (f == Format::kQ4) o.group_size = kQ4DefaultGroupSize;
  return o;
}

// The benchmarks run in registration order, grouped by (format, shape): only
// the current set is kept, so memory holds one set at a time.
const WeightSet& Weights(Format f, size_t n, size_t k) {
  static std::unique_ptr<WeightSet> cur;
  if (cur && cur->format == f && cur->n == n && cur->k == k) return *cur;
  cur.reset();
  auto ws = std::make_unique<WeightSet>();
  ws->format = f;
  ws->n = n;
  ws->k = k;
  const QuantizeOptions opt = Options(f);
  QuantizedTensor base = AllocateQuantized(f, n, k, opt);
  if (f == Format::kSFP8) base.desc.tensor_scale = Sfp8ScaleForMaxAbs(1.0f);
  Rng rng;
  constexpr size_t kRowsPerStep = 256;
  std::vector<float> rows(kRowsPerStep * k);
  for (size_t r0 = 0; r0 < n; r0 += kRowsPerStep) {
    const size_t r1 = std::min(n, r0 + kRowsPerStep);
    for (size_t j = 0; j < (r1 - r0) * k; ++j) rows[j] = rng.Next();
    QuantizeRowsInto(rows.data(), r0, r1, base, opt);
  }
  ws->bytes = WeightBytes(base.desc);
  const size_t copies = std::max<size_t>(1, (RotationBytes() + ws->bytes - 1) / ws->bytes);
  for (size_t c = 1; c < copies; ++c) {
    QuantizedTensor t;
    t.desc = base.desc;
    t.blob.Resize(base.desc.total_bytes);
    std::memcpy(t.blob.data(), base.blob.data(), base.desc.total_bytes);
    ws->copies.push_back(std::move(t));
  }
  ws->copies.push_back(std::move(base));
  cur = std::move(ws);
  return *cur;
}

// Per-CPU decode variants, timed beside the table's own entry wherever they
// differ from it, so a machine can A/B a per-CPU choice without a rebuild:
// "-nta" (kernels::TableWithNtaPrefetch: Zen 5's prefetchnta entries) and
// "-f32fma" (kernels::TableWithF32Sfp8Decode: the sfp8 decode of CPUs
// without AVX512_BF16).
struct Variant {
  const char* suffix;             // after the table's name in the benchmark name
  KernelTable (*table)(Isa isa);  // the table whose entry is timed
};
KernelTable DefaultTable(Isa isa) { return kernels::GetTable(isa); }
constexpr Variant kVariants[] = {{"", DefaultTable},
                                 {"-nta", kernels::TableWithNtaPrefetch},
                                 {"-f32fma", kernels::TableWithF32Sfp8Decode}};

// The entry a benchmark times: matmul or matmul_q8 of format f.
const void* Entry(const KernelTable& t, Format f, bool q8) {
  const int i = static_cast<int>(f);
  return q8 ? reinterpret_cast<const void*>(t.matmul_q8[i])
            : reinterpret_cast<const void*>(t.matmul[i]);
}

struct Case {
  Format format;
  Isa isa;
  size_t n, k, m;
  bool q8;  // int8-activation path
  const Variant* variant;
};

void RunMatmul(benchmark::State& state, Case c) {
  const KernelTable t = c.variant->table(c.isa);
  const WeightSet& ws = Weights(c.format, c.n, c.k);
  std::vector<QTensor> views;
  for (const QuantizedTensor& q : ws.copies) views.push_back(q.view());
  Rng rng;
  std::vector<float> x(c.m * c.k), y(c.m * c.n);
  for (float& v : x) v = rng.Next();
  std::vector<int8_t> xq(kernels::Q8ActsQuantBytes(c.m, c.k));
  std::vector<float> xs(kernels::Q8ActsBlockCount(c.m, c.k));
  std::vector<int32_t> xsum(kernels::Q8ActsBlockCount(c.m, c.k));
  // The activation blocks the engine would use for this weight and m.
  const size_t block = kernels::Q8ActBlockFor(views.front().desc, c.m);
  const kernels::Q8Acts acts{xq.data(), xs.data(), xsum.data(), c.m, c.k, (c.k + 63) / 64 * 64,
                             block};
  const int f = static_cast<int>(c.format);
  size_t it = 0;
  double best = 1e30;  // fastest single call, seconds
  // Decode is judged against a paired probe: after every call the same
  // number of bytes is streamed from the probe buffer (outside the timed
  // region), so slow minutes of a shared machine slow both sides alike.
  // Not with QLM_BENCH_ROTATION_MIB=0: that asks for a cache-resident
  // tensor, and the probe's stream would evict it before every call.
  const bool paired = c.m == 1 && RotationBytes() > 0;
  const size_t probe_bytes = (ws.bytes + 63) / 64 * 64;
  double call_s = 0.0, probe_s = 0.0;
  for (auto _ : state) {
    const QTensor& w = views[it++ % views.size()];
    const auto t0 = std::chrono::steady_clock::now();
    if (c.q8) {
      t.quantize_acts(x.data(), c.m, c.k, w.perm, block, xq.data(), xs.data(), xsum.data());
      t.matmul_q8[f](w, acts, y.data(), 0, c.n);
    } else {
      t.matmul[f](w, x.data(), c.m, y.data(), 0, c.n);
    }
    benchmark::ClobberMemory();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::min(best, s);
    if (paired) {
      state.PauseTiming();
      call_s += s;
      probe_s += TimeProbeSlice(probe_bytes);
      state.ResumeTiming();
    }
  }
  // Rates over CPU time (Google Benchmark's default clock), so time this
  // thread spent preempted does not count; `_best` from the fastest call.
  const double iters = static_cast<double>(state.iterations());
  const double bytes = iters * static_cast<double>(ws.bytes);
  const double flops = 2.0 * static_cast<double>(c.m * c.n * c.k);
  state.SetBytesProcessed(static_cast<int64_t>(bytes));
  using benchmark::Counter;
  state.counters["GBps"] = Counter(bytes / 1e9, Counter::kIsRate);
  state.counters["bw_frac"] = Counter(bytes / ReadBandwidth(), Counter::kIsRate);
  state.counters["GFLOPs"] = Counter(iters * flops / 1e9, Counter::kIsRate);
  state.counters["GBps_best"] = static_cast<double>(ws.bytes) / best / 1e9;
  state.counters["bw_frac_best"] = static_cast<double>(ws.bytes) / best / ReadBandwidth();
  state.counters["GFLOPs_best"] = flops / best / 1e9;
  if (paired) {
    state.counters["bw_frac_paired"] =
        (static_cast<double>(ws.bytes) / call_s) / (static_cast<double>(probe_bytes) / probe_s);
  }
  state.counters["copies"] = static_cast<double>(views.size());
}

}  // namespace

void RegisterMatmulBenchmarks() {
  struct Shape {
    size_t n, k;
  };
  std::vector<Shape> shapes = {{2304, 2304}, {9216, 2304}, {2304, 9216}};
  if (const char* e = std::getenv("QLM_BENCH_LARGE"); e != nullptr && std::string(e) == "1") {
    shapes.push_back({256000, 2304});
  }
  // QLM_BENCH_SHAPES="NxK,NxK" replaces the list (e.g. 128x2304 with
  // QLM_BENCH_ROTATION_MIB=0 for an L2-resident tensor).
  if (const char* e = std::getenv("QLM_BENCH_SHAPES"); e != nullptr && *e != '\0') {
    shapes.clear();
    for (const char* p = e;;) {
      Shape s{};
      const bool ok = ParseCount(p, &s.n) && *p++ == 'x' && ParseCount(p, &s.k) && s.n > 0 &&
                      s.k > 0 && s.n * s.k <= (size_t{1} << 34) && (*p == ',' || *p == '\0');
      if (!ok) BadEnv("QLM_BENCH_SHAPES", e, "NxK[,NxK...] with N, K > 0 and N*K <= 2^34");
      shapes.push_back(s);
      if (*p++ == '\0') break;
    }
  }
  for (const Shape& s : shapes) {
    for (int fi = 0; fi < kNumFormats; ++fi) {
      const Format f = static_cast<Format>(fi);
      for (int ii = 0; ii < kernels::kNumIsas; ++ii) {
        const Isa isa = static_cast<Isa>(ii);
        if (!kernels::IsaAvailable(isa)) continue;
        for (size_t m : {size_t{1}, size_t{64}}) {
          for (bool q8 : {false, true}) {
            if (q8 && f != Format::kInt8 && f != Format::kQ4) continue;
            for (const Variant& v : kVariants) {
              if (&v != &kVariants[0]) {  // decode variants where they differ
                const void* e = Entry(v.table(isa), f, q8);
                if (m != 1 || e == nullptr || e == Entry(kernels::GetTable(isa), f, q8)) continue;
              }
              const std::string name = std::string(q8 ? "matmul_q8/" : "matmul/") + FormatName(f) +
                                       "/" + kernels::IsaName(isa) + v.suffix + "/" +
                                       std::to_string(s.n) + "x" + std::to_string(s.k) +
                                       "/m:" + std::to_string(m);
              benchmark::RegisterBenchmark(name.c_str(), RunMatmul,
                                           Case{f, isa, s.n, s.k, m, q8, &v})
                  ->Unit(benchmark::kMicrosecond);
            }
          }
        }
      }
    }
  }
}

}  // namespace qlm::bench
