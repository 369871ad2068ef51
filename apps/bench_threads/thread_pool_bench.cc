// Dispatch overhead of core/thread_pool.
//   build/<preset>/bin/qlm-bench-threads
// BM_Handoff is the number that matters for decode: every range busy-waits
// `work_ns`, so with T threads an ideal pool takes work_ns per call; the time
// above that is the wake-up + join cost. BM_EmptyBody is the fixed cost of a
// call whose ranges are trivial (the caller typically runs them all itself).
#include <benchmark/benchmark.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

#include "core/thread_pool.h"

namespace {

void BusyWait(std::chrono::nanoseconds d) {
  const auto until = std::chrono::steady_clock::now() + d;
  while (std::chrono::steady_clock::now() < until) {
  }
}

// Args: threads, spin_us (0: workers park after every call, the futex path).
void BM_EmptyBody(benchmark::State& state) {
  const size_t threads = static_cast<size_t>(state.range(0));
  qlm::ThreadPool pool(threads, static_cast<unsigned>(state.range(1)));
  std::vector<uint64_t> sink(threads * 8, 0);
  for (auto _ : state) {
    pool.ParallelFor(threads * 16, 16, [&](size_t b, size_t e, size_t t) { sink[t * 8] += e - b; });
  }
  benchmark::DoNotOptimize(sink.data());
}
BENCHMARK(BM_EmptyBody)
    ->ArgNames({"threads", "spin_us"})
    ->Args({1, 50})
    ->Args({2, 50})
    ->Args({2, 0})
    ->UseRealTime();

// Args: threads, work per range in ns, spin_us.
void BM_Handoff(benchmark::State& state) {
  const size_t threads = static_cast<size_t>(state.range(0));
  const auto work = std::chrono::nanoseconds(state.range(1));
  qlm::ThreadPool pool(threads, static_cast<unsigned>(state.range(2)));
  for (auto _ : state) {
    pool.ParallelFor(threads, 1, [&](size_t, size_t, size_t) { BusyWait(work); });
  }
  state.counters["work_us"] = static_cast<double>(state.range(1)) / 1000.0;
}
BENCHMARK(BM_Handoff)
    ->ArgNames({"threads", "work_ns", "spin_us"})
    ->Args({1, 5000, 50})
    ->Args({2, 5000, 50})
    ->Args({2, 20000, 50})
    ->Args({2, 5000, 0})
    ->UseRealTime();

// Calls spaced by 20 us of caller-only work (decode: a norm or RoPE between
// two parallel matmuls), each range 5 us of work.
void BM_HandoffWithSerialGaps(benchmark::State& state) {
  const size_t threads = static_cast<size_t>(state.range(0));
  qlm::ThreadPool pool(threads);
  for (auto _ : state) {
    BusyWait(std::chrono::microseconds(20));
    pool.ParallelFor(threads, 1,
                     [&](size_t, size_t, size_t) { BusyWait(std::chrono::microseconds(5)); });
  }
}
BENCHMARK(BM_HandoffWithSerialGaps)->ArgName("threads")->Arg(1)->Arg(2)->UseRealTime();

// The baseline the pool replaces: a fresh std::thread per call.
void BM_SpawnThreadPerCall(benchmark::State& state) {
  std::atomic<uint64_t> sink{0};
  for (auto _ : state) {
    std::thread th([&] { sink.fetch_add(1, std::memory_order_relaxed); });
    sink.fetch_add(1, std::memory_order_relaxed);
    th.join();
  }
  benchmark::DoNotOptimize(sink.load());
}
BENCHMARK(BM_SpawnThreadPerCall)->UseRealTime();

}  // namespace
