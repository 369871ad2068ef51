#include "core/thread_pool.h"

#include <algorithm>
#include <chrono>
#include <fstream>
#include <set>
#include <string>
#include <system_error>

#include "base/error.h"

#if defined(__linux__)
#include <sched.h>
#endif

namespace qlm {
namespace {

// One spin-wait step: tells the core we are busy-waiting (frees the sibling
// hyper-thread, saves power) without giving up the time slice.
inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

// Spins until done() or about `us` microseconds have passed; true if done.
// The clock is read only every few dozen pauses to keep the loop tight.
template <class Done>
bool SpinFor(unsigned us, Done done) {
  if (done()) return true;
  if (us == 0) return false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::microseconds(us);
  for (;;) {
    for (int i = 0; i < 32; ++i) {
      CpuRelax();
      if (done()) return true;
    }
    if (std::chrono::steady_clock::now() >= deadline) return false;
  }
}

std::string ReadFirstLine(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  if (!in || !std::getline(in, line)) return {};
  return line;
}

}  // namespace

size_t PhysicalCoreCount() {
  const size_t fallback = std::max<size_t>(1, std::thread::hardware_concurrency());
#if defined(__linux__)
  cpu_set_t mask;
  CPU_ZERO(&mask);
  if (sched_getaffinity(0, sizeof(mask), &mask) != 0) return fallback;
  const size_t allowed = static_cast<size_t>(CPU_COUNT(&mask));
  if (allowed == 0) return fallback;
  // Each physical core is named by the list of its hardware threads; SMT
  // siblings read the same list, so distinct lists count cores.
  std::set<std::string> cores;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (!CPU_ISSET(cpu, &mask)) continue;
    const std::string dir = "/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/";
    std::string siblings = ReadFirstLine(dir + "core_cpus_list");
    if (siblings.empty()) siblings = ReadFirstLine(dir + "thread_siblings_list");
    if (siblings.empty()) return allowed;  // no topology: count every allowed CPU
    cores.insert(siblings);
  }
  return cores.empty() ? allowed : cores.size();
#else
  return fallback;
#endif
}

void ThreadPool::RangeFor(size_t n, size_t grain, size_t t, size_t num_threads, size_t* begin,
                          size_t* end) {
  if (grain == 0) grain = 1;
  // Whole grain-sized blocks are dealt out so the first (blocks % threads)
  // threads get one extra; empty ranges fall on the last threads, never on
  // the caller (thread 0).
  const size_t blocks = n / grain + (n % grain != 0);
  const size_t per = blocks / num_threads;
  const size_t extra = blocks % num_threads;
  const size_t first_block = t * per + std::min(t, extra);
  const size_t count = per + (t < extra ? 1 : 0);
  *begin = std::min(first_block * grain, n);
  *end = std::min((first_block + count) * grain, n);
}

namespace {

// claims_ layout: generation (32 bits) | ranges (16 bits) | next range (16).
constexpr size_t kMaxThreads = 0xffff;
inline uint64_t PackClaims(uint32_t generation, size_t ranges, size_t next) {
  return (uint64_t{generation} << 32) | (uint64_t{ranges} << 16) | uint64_t{next};
}
inline size_t ClaimRanges(uint64_t c) { return (c >> 16) & 0xffff; }
inline size_t ClaimNext(uint64_t c) { return c & 0xffff; }

}  // namespace

ThreadPool::ThreadPool(size_t num_threads, unsigned spin_us)
    : num_threads_(num_threads == 0 ? PhysicalCoreCount() : num_threads), spin_us_(spin_us) {
  if (num_threads_ > kMaxThreads) {
    throw Error("thread pool: " + std::to_string(num_threads_) + " threads requested, at most " +
                std::to_string(kMaxThreads) + " supported");
  }
  threads_.reserve(num_threads_ - 1);
  try {
    for (size_t t = 1; t < num_threads_; ++t) threads_.emplace_back([this] { WorkerLoop(); });
  } catch (const std::system_error& e) {
    stop_.store(true, std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_seq_cst);
    generation_.notify_all();
    for (auto& th : threads_) th.join();
    throw Error("thread pool: cannot start thread " + std::to_string(threads_.size() + 1) + " of " +
                std::to_string(num_threads_) + ": " + e.what());
  }
}

ThreadPool::~ThreadPool() {
  if (threads_.empty()) return;
  stop_.store(true, std::memory_order_relaxed);  // published by the bump below
  generation_.fetch_add(1, std::memory_order_seq_cst);
  generation_.notify_all();
  for (auto& th : threads_) th.join();
}

void ThreadPool::RecordException() {
  if (!has_exception_.exchange(true, std::memory_order_acq_rel)) {
    exception_ = std::current_exception();
  }
}

void ThreadPool::RunRange(size_t index) {
  size_t begin = 0, end = 0;
  if (job_chunked_) {
    begin = std::min(index * job_grain_, job_n_);
    end = std::min(begin + job_grain_, job_n_);
  } else {
    RangeFor(job_n_, job_grain_, index, num_threads_, &begin, &end);
  }
  if (begin >= end) return;
  try {
    job_fn_(job_ctx_, begin, end, index);
  } catch (...) {
    RecordException();
  }
}

void ThreadPool::RunClaimedRanges() {
  uint64_t c = claims_.load(std::memory_order_acquire);
  for (;;) {
    if (ClaimNext(c) >= ClaimRanges(c)) return;  // nothing left to claim
    // On failure c is reloaded; the acquire on success makes the job fields
    // written before this generation's claims_ store visible.
    if (!claims_.compare_exchange_weak(c, c + 1, std::memory_order_acq_rel,
                                       std::memory_order_acquire)) {
      continue;
    }
    RunRange(ClaimNext(c));
    if (remaining_.fetch_sub(1, std::memory_order_seq_cst) == 1 &&
        caller_sleeping_.load(std::memory_order_seq_cst) != 0) {
      remaining_.notify_one();
    }
    c = claims_.load(std::memory_order_acquire);
  }
}

void ThreadPool::WorkerLoop() {
  uint32_t seen = 0;
  for (;;) {
    // Wait for the next generation: spin first, then park on the futex.
    uint32_t gen = seen;
    const bool woke = SpinFor(spin_us_, [&] {
      gen = generation_.load(std::memory_order_acquire);
      return gen != seen;
    });
    if (!woke) {
      // Announce the sleep before re-checking, so a caller that bumps the
      // generation either sees us sleeping (and notifies) or we see its bump.
      sleepers_.fetch_add(1, std::memory_order_seq_cst);
      while ((gen = generation_.load(std::memory_order_seq_cst)) == seen) {
        generation_.wait(seen, std::memory_order_seq_cst);
      }
      sleepers_.fetch_sub(1, std::memory_order_relaxed);
    }
    seen = gen;
    if (stop_.load(std::memory_order_acquire)) return;
    RunClaimedRanges();
  }
}

void ThreadPool::Dispatch(size_t n, size_t grain, bool chunked, TrampolineFn fn, void* ctx) {
  if (in_use_.exchange(true, std::memory_order_acquire)) {
    throw Error(
        std::string("ThreadPool::") + (chunked ? "ParallelForChunks" : "ParallelFor") +
        " called while the pool is busy (from inside a parallel region, or from two threads "
        "at once): the pool is not reentrant");
  }
  if (chunked) {
    // claims_ counts ranges in 16 bits: widen the chunk to fit.
    const size_t max_chunks = kMaxThreads;
    const size_t min_grain = (n + max_chunks - 1) / max_chunks;
    if (grain < min_grain) grain = (min_grain + grain - 1) / grain * grain;
  }
  const size_t blocks = n / grain + (n % grain != 0);
  // All non-empty: RangeFor leaves no thread empty below `blocks` ranges,
  // and every chunk holds at least one item.
  const size_t ranges = chunked ? blocks : std::min(num_threads_, blocks);
  job_fn_ = fn;
  job_ctx_ = ctx;
  job_n_ = n;
  job_grain_ = grain;
  job_chunked_ = chunked;
  remaining_.store(static_cast<uint32_t>(ranges - 1), std::memory_order_relaxed);
  const uint32_t gen = generation_.load(std::memory_order_relaxed) + 1;
  // Range 0 is the caller's; 1.. are up for claims from now on.
  claims_.store(PackClaims(gen, ranges, 1), std::memory_order_release);
  generation_.store(gen, std::memory_order_seq_cst);  // wakes the spinners
  if (sleepers_.load(std::memory_order_seq_cst) != 0) generation_.notify_all();

  RunRange(0);
  RunClaimedRanges();  // whatever the workers have not picked up yet

  const bool done =
      SpinFor(spin_us_, [&] { return remaining_.load(std::memory_order_acquire) == 0; });
  if (!done) {
    caller_sleeping_.store(1, std::memory_order_seq_cst);
    uint32_t left;
    while ((left = remaining_.load(std::memory_order_seq_cst)) != 0) {
      remaining_.wait(left, std::memory_order_seq_cst);
    }
    caller_sleeping_.store(0, std::memory_order_relaxed);
  }

  std::exception_ptr error;
  if (has_exception_.load(std::memory_order_acquire)) {
    error = std::move(exception_);
    exception_ = nullptr;
    has_exception_.store(false, std::memory_order_relaxed);
  }
  in_use_.store(false, std::memory_order_release);
  if (error) std::rethrow_exception(error);
}

}  // namespace qlm
