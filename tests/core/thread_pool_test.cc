#include "core/thread_pool.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "base/error.h"

namespace qlm {
namespace {

// Runs ParallelFor(n, grain) and checks every index is visited exactly once,
// every range is aligned to grain, each thread index is used at most once and
// the range each thread got is the one RangeFor describes.
void CheckCoverage(ThreadPool& pool, size_t n, size_t grain) {
  SCOPED_TRACE("n=" + std::to_string(n) + " grain=" + std::to_string(grain) +
               " threads=" + std::to_string(pool.num_threads()));
  std::vector<std::atomic<int>> hits(n);
  std::vector<std::atomic<int>> calls_per_thread(pool.num_threads());
  std::vector<size_t> begins(pool.num_threads(), 0), ends(pool.num_threads(), 0);
  std::atomic<int> bad_thread{0};
  pool.ParallelFor(n, grain, [&](size_t begin, size_t end, size_t t) {
    if (t >= pool.num_threads()) {
      bad_thread.fetch_add(1);
      return;
    }
    calls_per_thread[t].fetch_add(1);
    begins[t] = begin;
    ends[t] = end;
    for (size_t i = begin; i < end; ++i) hits[i].fetch_add(1);
  });
  EXPECT_EQ(bad_thread.load(), 0);
  for (size_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << "index " << i;
  const size_t g = grain == 0 ? 1 : grain;
  for (size_t t = 0; t < pool.num_threads(); ++t) {
    ASSERT_LE(calls_per_thread[t].load(), 1) << "thread " << t;
    if (calls_per_thread[t].load() == 0) continue;
    EXPECT_LT(begins[t], ends[t]) << "thread " << t << " got an empty range";
    EXPECT_EQ(begins[t] % g, 0u) << "thread " << t;
    EXPECT_TRUE(ends[t] % g == 0 || ends[t] == n) << "thread " << t;
    if (pool.num_threads() > 1 && n > g) {
      size_t b = 0, e = 0;
      ThreadPool::RangeFor(n, g, t, pool.num_threads(), &b, &e);
      EXPECT_EQ(begins[t], b) << "thread " << t;
      EXPECT_EQ(ends[t], e) << "thread " << t;
    }
  }
  // The calling thread always has work when there is any.
  if (n > 0) {
    EXPECT_EQ(calls_per_thread[0].load(), 1);
  }
}

TEST(ThreadPool, CoversEveryIndexExactlyOnce) {
  for (size_t threads : {1, 2, 3, 4, 7}) {
    ThreadPool pool(threads);
    ASSERT_EQ(pool.num_threads(), threads);
    for (size_t n : {0, 1, 2, 3, 5, 6, 7, 15, 16, 17, 63, 64, 100, 1000, 4097}) {
      for (size_t grain : {0, 1, 2, 3, 16, 64, 5000}) CheckCoverage(pool, n, grain);
    }
  }
}

// ParallelForChunks: every index exactly once, in chunks [c·chunk, (c+1)·chunk)
// (the last one shorter) whose index c is what fn gets, each chunk once.
void CheckChunks(ThreadPool& pool, size_t n, size_t chunk) {
  SCOPED_TRACE("n=" + std::to_string(n) + " chunk=" + std::to_string(chunk) +
               " threads=" + std::to_string(pool.num_threads()));
  std::vector<std::atomic<int>> hits(n);
  const size_t c = chunk == 0 ? 1 : chunk;
  std::vector<std::atomic<int>> chunk_calls(n / c + 2);
  std::atomic<int> bad{0};
  pool.ParallelForChunks(n, chunk, [&](size_t begin, size_t end, size_t index) {
    const bool whole = n <= c || pool.num_threads() == 1;  // one inline call
    if (whole ? (begin != 0 || end != n || index != 0)
              : (begin != index * c || end != std::min(n, begin + c) || begin >= end)) {
      bad.fetch_add(1);
      return;
    }
    chunk_calls[index].fetch_add(1);
    for (size_t i = begin; i < end; ++i) hits[i].fetch_add(1);
  });
  EXPECT_EQ(bad.load(), 0);
  for (size_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << "index " << i;
  for (size_t k = 0; k < chunk_calls.size(); ++k) ASSERT_LE(chunk_calls[k].load(), 1) << k;
}

TEST(ThreadPool, ChunksCoverEveryIndexOnceInChunkOrder) {
  for (size_t threads : {1, 2, 3, 7}) {
    ThreadPool pool(threads);
    for (size_t n : {0, 1, 2, 5, 16, 17, 100, 1000, 4097}) {
      for (size_t chunk : {0, 1, 3, 16, 64, 5000}) CheckChunks(pool, n, chunk);
    }
  }
}

TEST(ThreadPool, ChunksAreSharedOutToWhoeverIsFree) {
  // Chunk 0 goes to the caller; while it is stalled there, the other thread
  // takes every later chunk (fixed halves would give it 4 of 8). The stall
  // ends when the worker is done or after 10 s (a worker that never runs).
  ThreadPool pool(2);
  std::atomic<int> worker_chunks{0};
  const auto caller = std::this_thread::get_id();
  pool.ParallelForChunks(8, 1, [&](size_t, size_t, size_t index) {
    if (std::this_thread::get_id() != caller) worker_chunks.fetch_add(1);
    if (index != 0) return;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (worker_chunks.load() < 7 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  });
  EXPECT_EQ(worker_chunks.load(), 7);
}

TEST(ThreadPool, TooManyChunksAreWidened) {
  // 200000 chunks of 1 exceed the 65535 ranges a job can count: chunks are
  // widened to a multiple of the request, still covering everything once.
  ThreadPool pool(2);
  std::atomic<size_t> calls{0}, items{0};
  std::atomic<int> bad{0};
  pool.ParallelForChunks(200000, 1, [&](size_t begin, size_t end, size_t) {
    if (end - begin != 4 && end != 200000) bad.fetch_add(1);
    calls.fetch_add(1);
    items.fetch_add(end - begin);
  });
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(items.load(), 200000u);
  EXPECT_EQ(calls.load(), 50000u);  // chunks of 4 (ceil(200000 / 65535) = 4)
}

TEST(ThreadPool, ZeroItemsNeverCallsFn) {
  ThreadPool pool(3);
  int calls = 0;
  pool.ParallelFor(0, 16, [&](size_t, size_t, size_t) { ++calls; });
  EXPECT_EQ(calls, 0);
}

TEST(ThreadPool, FewerBlocksThanThreadsLeavesTrailingThreadsIdle) {
  // 3 blocks of 16 over 4 threads: threads 0..2 get one block each, thread 3
  // nothing; the split is in order.
  size_t b = 0, e = 0;
  ThreadPool::RangeFor(40, 16, 0, 4, &b, &e);
  EXPECT_EQ(b, 0u);
  EXPECT_EQ(e, 16u);
  ThreadPool::RangeFor(40, 16, 2, 4, &b, &e);
  EXPECT_EQ(b, 32u);
  EXPECT_EQ(e, 40u);
  ThreadPool::RangeFor(40, 16, 3, 4, &b, &e);
  EXPECT_EQ(b, e);
  // 10 blocks over 4 threads: 3, 3, 2, 2.
  ThreadPool::RangeFor(160, 16, 1, 4, &b, &e);
  EXPECT_EQ(b, 48u);
  EXPECT_EQ(e, 96u);
  ThreadPool::RangeFor(160, 16, 3, 4, &b, &e);
  EXPECT_EQ(b, 128u);
  EXPECT_EQ(e, 160u);
}

TEST(ThreadPool, SingleThreadRunsInlineOnTheCaller) {
  ThreadPool pool(1);
  const auto caller = std::this_thread::get_id();
  std::thread::id ran_on;
  size_t got_begin = 99, got_end = 0, got_t = 99;
  pool.ParallelFor(37, 16, [&](size_t begin, size_t end, size_t t) {
    ran_on = std::this_thread::get_id();
    got_begin = begin;
    got_end = end;
    got_t = t;
  });
  EXPECT_EQ(ran_on, caller);
  EXPECT_EQ(got_begin, 0u);
  EXPECT_EQ(got_end, 37u);
  EXPECT_EQ(got_t, 0u);
}

TEST(ThreadPool, CallerRunsRangeZeroAndWorkersRunTheRest) {
  // Range 0 blocks until ranges 1 and 2 have run, which only workers can do
  // (the caller is stuck in range 0): proves the workers take part.
  // The 10 s limit only guards against a hang.
  ThreadPool pool(3);
  std::vector<std::thread::id> ids(3);
  std::atomic<int> others_done{0};
  bool timed_out = false;
  pool.ParallelFor(3, 1, [&](size_t, size_t, size_t t) {
    ids[t] = std::this_thread::get_id();
    if (t != 0) {
      others_done.fetch_add(1);
      return;
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (others_done.load() < 2) {
      if (std::chrono::steady_clock::now() > deadline) {
        timed_out = true;
        return;
      }
      std::this_thread::yield();
    }
  });
  ASSERT_FALSE(timed_out) << "workers never ran ranges 1 and 2";
  EXPECT_EQ(ids[0], std::this_thread::get_id());
  EXPECT_NE(ids[1], ids[0]);
  EXPECT_NE(ids[2], ids[0]);  // one worker may have run both
}

TEST(ThreadPool, CallerTakesOverRangesOfAStalledWorker) {
  // Worker-side stall: whichever thread runs range 1 first sleeps; the
  // remaining ranges still complete (by the caller or the other worker) and
  // ParallelFor returns only when range 1 is done too.
  ThreadPool pool(3);
  std::atomic<int> done{0};
  pool.ParallelFor(300, 1, [&](size_t, size_t, size_t t) {
    if (t == 1) std::this_thread::sleep_for(std::chrono::milliseconds(30));
    done.fetch_add(1);
  });
  EXPECT_EQ(done.load(), 3);
}

// Sanitizer builds run the dispatch loop 5x fewer times (each atomic is
// instrumented), still enough to find the best batch.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr int kDispatchBatches = 20;
#else
constexpr int kDispatchBatches = 100;
#endif

TEST(ThreadPool, RepeatedDispatchIsFastAndCorrect) {
  // Decode issues ~100 dispatches per token, so one must cost microseconds.
  // 100k dispatches in batches of 1000; the bound applies to the best batch
  // (as benchmarks take the best run), because on a shared, oversubscribed
  // CI machine any batch can lose a time slice. 20 us per dispatch is ~50x
  // what a quiet machine measures; a thread start per call (~40 us) or a
  // sleep-based wake-up fails it, a lost wake-up hangs.
  ThreadPool pool(2);
  constexpr int kBatch = 1000;
  std::vector<uint64_t> per_thread_sum(2 * 8, 0);  // padded: one line each
  double best = 1e9, total = 0;
  for (int b = 0; b < kDispatchBatches; ++b) {
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < kBatch; ++i) {
      pool.ParallelFor(64, 16, [&](size_t begin, size_t end, size_t t) {
        per_thread_sum[t * 8] += end - begin;
      });
    }
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    best = std::min(best, s / kBatch);
    total += s;
  }
  const uint64_t n = uint64_t{kDispatchBatches} * kBatch;
  EXPECT_EQ(per_thread_sum[0] + per_thread_sum[8], 64 * n);
  EXPECT_EQ(per_thread_sum[0], 32 * n);
  EXPECT_LT(best, 20e-6) << "best batch: " << best * 1e6 << " us per dispatch";
  std::printf("[   info   ] %llu dispatches on 2 threads: %.3f s, best batch %.2f us each\n",
              static_cast<unsigned long long>(n), total, best * 1e6);
}

TEST(ThreadPool, RacingClaimsCoverEveryIndexEveryTime) {
  // Ranges with real work, so workers and the caller race for claims on
  // every call; each call must still see every index exactly once.
  ThreadPool pool(4);
  std::vector<uint32_t> data(1000);
  for (int iter = 0; iter < 3000; ++iter) {
    std::atomic<uint64_t> sum{0}, count{0};
    pool.ParallelFor(data.size(), 16, [&](size_t b, size_t e, size_t) {
      uint64_t local = 0;
      for (size_t i = b; i < e; ++i) {
        data[i] = static_cast<uint32_t>(i + iter);
        local += i;
      }
      sum.fetch_add(local);
      count.fetch_add(e - b);
    });
    ASSERT_EQ(count.load(), data.size()) << "iteration " << iter;
    ASSERT_EQ(sum.load(), data.size() * (data.size() - 1) / 2) << "iteration " << iter;
    ASSERT_EQ(data[999], 999u + iter);
  }
}

TEST(ThreadPool, WakesUpAfterParking) {
  // spin_us = 0: workers park immediately, so every dispatch goes through
  // the futex path; a lost wake-up would hang (and time out) here.
  ThreadPool pool(3, /*spin_us=*/0);
  for (int i = 0; i < 2000; ++i) {
    std::atomic<size_t> total{0};
    pool.ParallelFor(30, 1, [&](size_t b, size_t e, size_t) { total.fetch_add(e - b); });
    ASSERT_EQ(total.load(), 30u);
    if (i % 500 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

TEST(ThreadPool, WorkerExceptionIsRethrownOnTheCaller) {
  ThreadPool pool(3);
  std::atomic<int> ran{0};
  try {
    pool.ParallelFor(300, 1, [&](size_t, size_t, size_t t) {
      ran.fetch_add(1);
      if (t == 2) throw std::runtime_error("boom from worker 2");
    });
    FAIL() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "boom from worker 2");
  }
  EXPECT_EQ(ran.load(), 3);  // the other ranges still ran to completion
  // The pool stays usable afterwards.
  std::atomic<size_t> total{0};
  pool.ParallelFor(300, 1, [&](size_t b, size_t e, size_t) { total.fetch_add(e - b); });
  EXPECT_EQ(total.load(), 300u);
}

TEST(ThreadPool, CallerExceptionIsRethrownAfterWorkersFinish) {
  ThreadPool pool(2);
  std::atomic<int> finished{0};
  EXPECT_THROW(pool.ParallelFor(2, 1,
                                [&](size_t, size_t, size_t t) {
                                  if (t == 0) throw Error("caller range failed");
                                  std::this_thread::sleep_for(std::chrono::milliseconds(20));
                                  finished.fetch_add(1);
                                }),
               Error);
  EXPECT_EQ(finished.load(), 1);  // the worker's range completed before the rethrow
}

TEST(ThreadPool, EveryThreadThrowingGivesOneException) {
  ThreadPool pool(4);
  for (int i = 0; i < 50; ++i) {
    EXPECT_THROW(pool.ParallelFor(4, 1, [](size_t, size_t, size_t) { throw Error("all fail"); }),
                 Error);
  }
}

TEST(ThreadPool, NestedCallIsRejectedNotDeadlocked) {
  ThreadPool pool(2);
  std::atomic<int> rejected{0}, rejected_chunks{0};
  pool.ParallelFor(2, 1, [&](size_t, size_t, size_t) {
    try {
      pool.ParallelFor(4, 1, [](size_t, size_t, size_t) {});
    } catch (const Error& e) {
      if (std::string(e.what()).find("not reentrant") != std::string::npos) rejected.fetch_add(1);
    }
    try {
      pool.ParallelForChunks(4, 1, [](size_t, size_t, size_t) {});
    } catch (const Error& e) {
      const std::string what = e.what();
      if (what.find("ParallelForChunks") != std::string::npos &&
          what.find("not reentrant") != std::string::npos) {
        rejected_chunks.fetch_add(1);
      }
    }
  });
  EXPECT_EQ(rejected.load(), 2);
  EXPECT_EQ(rejected_chunks.load(), 2);
}

TEST(ThreadPool, DestroyWhileIdle) {
  // Workers parked (after spinning) and workers still spinning must both
  // shut down promptly.
  for (int i = 0; i < 20; ++i) {
    ThreadPool pool(4, /*spin_us=*/i % 2 == 0 ? 0 : 1000);
    if (i % 3 == 0) {
      pool.ParallelFor(100, 16, [](size_t, size_t, size_t) {});
    }
    if (i % 4 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ThreadPool never_used(3);
  SUCCEED();
}

TEST(ThreadPool, DefaultThreadCountIsPhysicalCores) {
  const size_t cores = PhysicalCoreCount();
  EXPECT_GE(cores, 1u);
  EXPECT_LE(cores, std::max<size_t>(1, std::thread::hardware_concurrency()));
  ThreadPool pool;
  EXPECT_EQ(pool.num_threads(), cores);
}

TEST(ThreadPool, AcceptsConstAndMutableCallables) {
  ThreadPool pool(2);
  std::atomic<size_t> total{0};
  const auto add = [&](size_t b, size_t e, size_t) { total.fetch_add(e - b); };
  pool.ParallelFor(10, 1, add);
  int counter = 0;
  std::mutex mu;
  auto mut = [&, local = 0](size_t b, size_t e, size_t) mutable {
    std::lock_guard<std::mutex> lock(mu);
    local += static_cast<int>(e - b);
    counter += static_cast<int>(e - b);
  };
  pool.ParallelFor(10, 1, mut);
  EXPECT_EQ(total.load(), 10u);
  EXPECT_EQ(counter, 10);
}

}  // namespace
}  // namespace qlm
