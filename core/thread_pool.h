// A persistent thread pool for the forward pass: threads are created once and
// reused for every matmul, so a dispatch costs well under a microsecond, not
// a thread start. Decode issues ~100 ParallelFor calls per token, each
// splitting the output rows of one operation into one contiguous range per
// thread.
//
// Wake-up: the caller publishes a job and bumps a generation counter; idle
// workers spin on that counter for a short while (a new job usually follows
// within microseconds) and then park on a futex (std::atomic::wait), so an idle
// pool costs no CPU. The calling thread is worker 0: it runs range 0 itself.
// The other ranges are claimed through one atomic counter, by whichever
// thread gets there first, the caller included once its own range is done:
// a worker that is descheduled (a busy or oversubscribed machine) delays
// nothing, its range is simply run by someone else.
// No allocation per call: the callable is passed by address through a void*
// and a per-type trampoline, never as std::function.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <thread>
#include <type_traits>
#include <vector>

namespace qlm {

// Physical cores this process may run on: CPUs of the affinity mask, with SMT
// siblings (core_cpus_list / thread_siblings_list in sysfs) counted once.
// Falls back to std::thread::hardware_concurrency() (at least 1).
size_t PhysicalCoreCount();

class ThreadPool {
 public:
  // num_threads counts the calling thread: ThreadPool(1) starts no thread and
  // runs everything inline; 0 means PhysicalCoreCount(). Idle workers spin for
  // about spin_us microseconds before parking.
  explicit ThreadPool(size_t num_threads = 0, unsigned spin_us = 50);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  size_t num_threads() const { return num_threads_; }

  // Calls fn(begin, end, index) over [0, n) split into at most num_threads()
  // contiguous ranges; every boundary except n is a multiple of grain (0
  // counts as 1), so ranges start on row tiles or cache lines. The split
  // depends only on (n, grain, num_threads()), never on timing, so results
  // are reproducible. `index` < num_threads() numbers the ranges (range 0 is
  // [0, ...) and always runs on the calling thread); each index is used by
  // exactly one call, so per-index scratch or partial results are safe: no
  // two calls with the same index ever run at once. Empty ranges are not
  // called. Returns when every range is done. If fn throws, the first
  // exception is rethrown here after all ranges have finished.
  // Not reentrant: calling it from inside fn, or from two threads at once on
  // one pool, throws qlm::Error.
  template <class Fn>
  void ParallelFor(size_t n, size_t grain, Fn&& fn) {
    if (n == 0) return;
    if (grain == 0) grain = 1;
    if (num_threads_ == 1 || n <= grain) {
      fn(size_t{0}, n, size_t{0});
      return;
    }
    using F = std::remove_reference_t<Fn>;
    Dispatch(n, grain, /*chunked=*/false, &Trampoline<F>,
             const_cast<void*>(static_cast<const void*>(std::addressof(fn))));
  }

  // Like ParallelFor, but [0, n) is cut into consecutive chunks of `chunk`
  // items (the last one may be shorter) that whichever thread is free claims
  // next, the caller starting with chunk 0. For long loops whose threads run
  // at different speeds (prefill on a shared machine), where one range per
  // thread leaves the faster threads waiting for the slowest at the end.
  // fn(begin, end, index) gets the CHUNK index, not a thread index, and may
  // be called several times on one thread. At most 65535 chunks: a smaller
  // chunk is widened (to a multiple of the original one).
  template <class Fn>
  void ParallelForChunks(size_t n, size_t chunk, Fn&& fn) {
    if (n == 0) return;
    if (chunk == 0) chunk = 1;
    if (num_threads_ == 1 || n <= chunk) {
      fn(size_t{0}, n, size_t{0});
      return;
    }
    using F = std::remove_reference_t<Fn>;
    Dispatch(n, chunk, /*chunked=*/true, &Trampoline<F>,
             const_cast<void*>(static_cast<const void*>(std::addressof(fn))));
  }

  // The range thread t of T gets for (n, grain): [*begin, *end), possibly
  // empty. Exposed so tests and callers can reason about the split.
  static void RangeFor(size_t n, size_t grain, size_t t, size_t num_threads, size_t* begin,
                       size_t* end);

 private:
  using TrampolineFn = void (*)(void* ctx, size_t begin, size_t end, size_t index);
  template <class F>
  static void Trampoline(void* ctx, size_t begin, size_t end, size_t index) {
    (*static_cast<F*>(ctx))(begin, end, index);
  }

  // chunked: ranges are the grain-sized chunks (ParallelForChunks), not one
  // per thread (RangeFor).
  void Dispatch(size_t n, size_t grain, bool chunked, TrampolineFn fn, void* ctx);
  void WorkerLoop();
  void RunRange(size_t index);
  // Claims and runs ranges of the current job until none are left.
  void RunClaimedRanges();
  void RecordException();

  const size_t num_threads_;
  const unsigned spin_us_;
  std::vector<std::thread> threads_;

  // The current job, written by the caller before it is published in
  // claims_; read only by a thread holding a claimed range of it, so never
  // rewritten while read (the caller waits for every claimed range).
  TrampolineFn job_fn_ = nullptr;
  void* job_ctx_ = nullptr;
  size_t job_n_ = 0;
  size_t job_grain_ = 1;
  bool job_chunked_ = false;

  // claims_ packs (generation << 32) | (ranges << 16) | next_range: a claim
  // is a CAS that bumps next_range while it is below ranges, so a worker
  // waking late can never claim a range of a job other than the one it read.
  alignas(64) std::atomic<uint64_t> claims_{0};
  // Ranges 1.. not finished yet; the caller waits for 0.
  alignas(64) std::atomic<uint32_t> remaining_{0};
  // Bumped once per job (and at shutdown): what idle workers spin and park on.
  alignas(64) std::atomic<uint32_t> generation_{0};
  std::atomic<uint32_t> sleepers_{0};         // workers parked on generation_
  std::atomic<uint32_t> caller_sleeping_{0};  // caller parked on remaining_
  std::atomic<bool> stop_{false};
  std::atomic<bool> in_use_{false};
  std::atomic<bool> has_exception_{false};
  std::exception_ptr exception_;
};

}  // namespace qlm
