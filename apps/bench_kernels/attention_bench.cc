// Attention microbenchmarks: one call over all heads of a Gemma-2-2B-like
// layer (8 query heads, 4 kv heads, head_dim 256, f32 KV cache, soft-cap 50)
// at context 512 and 4096, single thread, for every table this CPU runs.
// Decode (n_q = 1) is bound by streaming K and V: bytes_per_second counts the
// K and V bytes of the visible slots. Prefill (n_q = 64) shows the row tiling.
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "kernels/registry.h"

namespace {

using qlm::kernels::AttentionArgs;
using qlm::kernels::Isa;

constexpr size_t kHeads = 8, kKvHeads = 4, kHeadDim = 256;

void BM_Attention(benchmark::State& state) {
  const Isa isa = static_cast<Isa>(state.range(0));
  const size_t ctx = static_cast<size_t>(state.range(1));
  const size_t n_q = static_cast<size_t>(state.range(2));
  if (!qlm::kernels::IsaAvailable(isa)) {
    state.SkipWithError("ISA not available on this CPU");
    return;
  }
  const qlm::kernels::KernelTable& t = qlm::kernels::GetTable(isa);
  state.SetLabel(qlm::kernels::IsaName(isa));

  std::mt19937 rng(1);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  auto random_vec = [&](size_t n) {
    std::vector<float> v(n);
    for (float& x : v) x = dist(rng);
    return v;
  };
  const std::vector<float> q = random_vec(n_q * kHeads * kHeadDim);
  const std::vector<float> k = random_vec(kKvHeads * ctx * kHeadDim);
  const std::vector<float> v = random_vec(kKvHeads * ctx * kHeadDim);
  std::vector<float> out(q.size());
  std::vector<int32_t> slot_pos(ctx);
  for (size_t s = 0; s < ctx; ++s) slot_pos[s] = static_cast<int32_t>(s);

  AttentionArgs a;
  a.q = q.data();
  a.out = out.data();
  a.k = k.data();
  a.v = v.data();
  a.slot_pos = slot_pos.data();
  a.n_slots = ctx;
  a.capacity = ctx;
  a.n_q = n_q;
  a.n_heads = kHeads;
  a.n_kv_heads = kKvHeads;
  a.head_dim = kHeadDim;
  a.q_pos0 = static_cast<int32_t>(ctx - n_q);  // the last n_q positions
  a.scale = 1.0f / std::sqrt(static_cast<float>(kHeadDim));
  a.softcap = 50.0f;
  a.head_begin = 0;
  a.head_end = kHeads;

  for (auto _ : state) {
    t.attention(a);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  const double kv_bytes = 2.0 * kKvHeads * ctx * kHeadDim * sizeof(float);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kv_bytes));
  // 2 flops per multiply-add, q·k and p·v, every (query, head, slot).
  const double flops = 4.0 * static_cast<double>(n_q * kHeads * ctx * kHeadDim);
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

void AttentionArgsProduct(benchmark::internal::Benchmark* b) {
  b->ArgNames({"isa", "ctx", "n_q"});
  for (int isa = 0; isa < qlm::kernels::kNumIsas; ++isa) {
    if (!qlm::kernels::IsaCompiledIn(static_cast<Isa>(isa))) continue;
    for (int ctx : {512, 4096}) b->Args({isa, ctx, 1});
    b->Args({isa, 512, 64});
  }
  b->Unit(benchmark::kMicrosecond);
}

BENCHMARK(BM_Attention)->Apply(AttentionArgsProduct);

}  // namespace
