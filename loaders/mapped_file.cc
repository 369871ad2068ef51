#include "loaders/mapped_file.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "base/error.h"

namespace qlm {
namespace {

// ---- A file that shrinks while it is mapped.
//
// The loaders validate every offset against the file's size at open, but
// the size can change afterwards: another program truncates or rewrites
// the file in place (or the disk fails), and then touching a page past the
// new end raises SIGBUS — in a parser, or later in a kernel reading weights
// on any thread. No bounds check can prevent that (the check and the access
// race), and the weights are gone, so there is nothing to recover. Policy:
// every live mapping is registered here, and a SIGBUS whose faulting address
// lies in one of them prints one line
//   error: <path> changed while it was mapped (...)
// and exits with status 1 — the CLI's contract for a bad model file —
// instead of dying by the signal. A SIGBUS anywhere else goes to the handler
// that was installed before (a sanitizer's, a fuzzer's) or the default
// action. The handler is installed when the first file is mapped.

constexpr int kSlots = 1024;  // live mappings tracked (more are simply not guarded)
constexpr size_t kPathBytes = 240;

struct Slot {
  std::atomic<bool> used{false};
  std::atomic<uintptr_t> begin{0};  // 0 = not published
  uintptr_t end = 0;
  char path[kPathBytes] = {};
};

Slot g_slots[kSlots];
struct sigaction g_previous {};
std::once_flag g_install_once;

void WriteAll(const char* s, size_t n) {
  while (n > 0) {
    const ssize_t w = ::write(2, s, n);
    if (w <= 0) return;
    s += w;
    n -= static_cast<size_t>(w);
  }
}

// Async-signal-safe: reads the registry, write(2), _exit.
void OnSigbus(int sig, siginfo_t* info, void* context) {
  const auto addr = reinterpret_cast<uintptr_t>(info != nullptr ? info->si_addr : nullptr);
  for (const Slot& s : g_slots) {
    const uintptr_t begin = s.begin.load(std::memory_order_acquire);
    if (begin != 0 && addr >= begin && addr < s.end) {
      static const char kHead[] = "error: ";
      static const char kTail[] =
          " changed while it was mapped (truncated or rewritten by another program, or a read "
          "error); cannot continue\n";
      WriteAll(kHead, sizeof(kHead) - 1);
      WriteAll(s.path, ::strnlen(s.path, kPathBytes));
      WriteAll(kTail, sizeof(kTail) - 1);
      ::_exit(1);
    }
  }
  // Not one of ours.
  if ((g_previous.sa_flags & SA_SIGINFO) != 0 && g_previous.sa_sigaction != nullptr) {
    g_previous.sa_sigaction(sig, info, context);
    return;
  }
  if (g_previous.sa_handler != SIG_DFL && g_previous.sa_handler != SIG_IGN &&
      g_previous.sa_handler != nullptr) {
    g_previous.sa_handler(sig);
    return;
  }
  // The default action: restore it and let the signal (re-raised here, and
  // raised again by the faulting instruction on return) terminate us.
  ::signal(SIGBUS, SIG_DFL);
  ::raise(SIGBUS);
}

void InstallHandler() {
  struct sigaction sa {};
  sa.sa_sigaction = OnSigbus;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGBUS, &sa, &g_previous);
}

void Register(const void* data, size_t size, const std::string& path) {
  std::call_once(g_install_once, InstallHandler);
  for (Slot& s : g_slots) {
    bool expected = false;
    if (!s.used.compare_exchange_strong(expected, true)) continue;
    const size_t n = std::min(path.size(), kPathBytes - 1);
    std::memcpy(s.path, path.data(), n);
    s.path[n] = '\0';
    s.end = reinterpret_cast<uintptr_t>(data) + size;
    s.begin.store(reinterpret_cast<uintptr_t>(data), std::memory_order_release);
    return;
  }
}

// Before munmap: the range may be reused by another mapping right after.
// A read copy (kRead) was never registered; the scan simply finds nothing.
void Unmap(const uint8_t* data, size_t bytes) {
  if (data == nullptr) return;
  for (Slot& s : g_slots) {
    if (s.begin.load(std::memory_order_acquire) == reinterpret_cast<uintptr_t>(data)) {
      s.begin.store(0, std::memory_order_release);
      s.used.store(false, std::memory_order_release);
      break;
    }
  }
  ::munmap(const_cast<uint8_t*>(data), bytes);
}

constexpr size_t kHugePage = size_t{2} << 20;

// The bytes mapped for a file of `size` bytes: the file itself, or its
// read copy rounded up to whole 2 MiB pages (MapAlignedAnonymous).
size_t MappingBytes(size_t size, FileResidency residency) {
  return residency == FileResidency::kRead ? (size + kHugePage - 1) / kHugePage * kHugePage : size;
}

// Anonymous memory for `size` bytes starting on a 2 MiB boundary, so that
// transparent huge pages can back all of it: over-allocate by one huge page
// and give back the unaligned head and the tail. Returns the start of
// MappingBytes(size, kRead) bytes.
uint8_t* MapAlignedAnonymous(size_t size, const std::string& path) {
  const size_t rounded = MappingBytes(size, FileResidency::kRead);
  void* raw = ::mmap(nullptr, rounded + kHugePage, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) {
    throw Error("cannot allocate " + std::to_string(rounded >> 20) + " MiB to read " + path +
                " into: " + std::strerror(errno));
  }
  const auto begin = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t aligned = (begin + kHugePage - 1) / kHugePage * kHugePage;
  if (aligned > begin) ::munmap(raw, aligned - begin);
  const uintptr_t tail = aligned + rounded;
  const uintptr_t raw_end = begin + rounded + kHugePage;
  if (raw_end > tail) ::munmap(reinterpret_cast<void*>(tail), raw_end - tail);
  auto* p = reinterpret_cast<uint8_t*>(aligned);
  ::madvise(p, rounded, MADV_HUGEPAGE);  // a hint, as for the mapping
  return p;
}

// Reads [begin, end) of fd into dst + begin, adding each piece to `done`;
// returns an error message, empty on success (the file ending early means
// it shrank after fstat).
std::string ReadRange(int fd, uint8_t* dst, size_t begin, size_t end, size_t size,
                      const std::string& path, std::atomic<size_t>& done) {
  constexpr size_t kPiece = size_t{16} << 20;
  size_t at = begin;
  while (at < end) {
    const ssize_t r = ::pread(fd, dst + at, std::min(kPiece, end - at), static_cast<off_t>(at));
    if (r < 0) {
      if (errno == EINTR) continue;
      return "cannot read " + path + ": " + std::strerror(errno);
    }
    if (r == 0) {
      return path + " ended after " + std::to_string(at) + " of its " + std::to_string(size) +
             " bytes while it was read (changed by another program?)";
    }
    at += static_cast<size_t>(r);
    done.fetch_add(static_cast<size_t>(r), std::memory_order_relaxed);
  }
  return {};
}

// Reads all `size` bytes of fd into dst: 64 MiB chunks (whole 2 MiB pages)
// claimed by `threads` threads, the caller included, which alone reports
// `progress`. Throws naming the path on an error.
void ReadWhole(int fd, uint8_t* dst, size_t size, const std::string& path, size_t threads,
               const ReadProgressFn& progress) {
  constexpr size_t kChunk = size_t{64} << 20;
  const size_t chunks = (size + kChunk - 1) / kChunk;
  threads = std::clamp<size_t>(threads, 1, chunks);
  std::atomic<size_t> next{0}, done{0};
  std::mutex error_mu;
  std::string error;
  size_t reported = 0;  // the caller's last report
  auto work = [&](bool report) {
    for (size_t c; (c = next.fetch_add(1, std::memory_order_relaxed)) < chunks;) {
      std::string e =
          ReadRange(fd, dst, c * kChunk, std::min(size, (c + 1) * kChunk), size, path, done);
      if (!e.empty()) {
        const std::lock_guard<std::mutex> lock(error_mu);
        if (error.empty()) error = std::move(e);
        next.store(chunks, std::memory_order_relaxed);  // the others stop too
        return;
      }
      if (report && progress) {
        reported = done.load(std::memory_order_relaxed);
        progress(reported, size, path);
      }
    }
  };
  std::vector<std::thread> helpers;
  try {
    for (size_t t = 1; t < threads; ++t) helpers.emplace_back(work, false);
  } catch (const std::system_error&) {
    // No thread to spare: the caller reads what the others do not.
  }
  try {
    work(true);
  } catch (...) {  // from `progress`: stop and join the helpers first
    next.store(chunks, std::memory_order_relaxed);
    for (std::thread& t : helpers) t.join();
    throw;
  }
  for (std::thread& t : helpers) t.join();
  if (!error.empty()) throw Error(error);
  if (progress && reported < size) progress(size, size, path);
}

}  // namespace

bool ReadCopyFits(size_t file_bytes, size_t available_bytes) {
  constexpr size_t kReserve = size_t{512} << 20;
  const size_t need = file_bytes + file_bytes / 8;
  return need >= file_bytes && available_bytes >= kReserve && need <= available_bytes - kReserve;
}

size_t AvailableMemoryBytes() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  size_t kib = 0;
  std::string unit;
  while (in >> key >> kib >> unit) {
    if (key == "MemAvailable:") return kib <= SIZE_MAX / 1024 ? kib * 1024 : SIZE_MAX;
  }
  return SIZE_MAX;
}

MappedFile MappedFile::Open(const std::string& path, const FileReadOptions& options) {
  FileResidency residency = options.residency;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error("cannot open " + path + ": " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    throw Error("cannot stat " + path + ": " + std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error(path + " is not a regular file");
  }
  MappedFile f;
  f.path_ = path;
  f.size_ = static_cast<size_t>(st.st_size);
  if (residency == FileResidency::kRead && !ReadCopyFits(f.size_, AvailableMemoryBytes())) {
    residency = FileResidency::kMapped;
  }
  f.residency_ = residency;
  if (f.size_ > 0 && residency == FileResidency::kRead) {
    uint8_t* p = nullptr;
    try {
      p = MapAlignedAnonymous(f.size_, path);
      f.data_ = p;  // owned by f from here: a throw below unmaps it
      ReadWhole(fd, p, f.size_, path, options.threads, options.progress);
    } catch (...) {
      ::close(fd);
      throw;
    }
    // Weights are read-only, as when mapped.
    ::mprotect(p, MappingBytes(f.size_, residency), PROT_READ);
  } else if (f.size_ > 0) {
    void* p = ::mmap(nullptr, f.size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      throw Error("cannot mmap " + path + ": " + std::strerror(err));
    }
    // Ask for 2 MiB page-cache folios mapped with huge pages where the
    // kernel and file system allow (a hint: failure changes nothing).
    ::madvise(p, f.size_, MADV_HUGEPAGE);
    f.data_ = static_cast<const uint8_t*>(p);
    Register(f.data_, f.size_, path);
  }
  ::close(fd);  // the mapping keeps the file referenced
  return f;
}

MappedFile::MappedFile(MappedFile&& o) noexcept
    : data_(std::exchange(o.data_, nullptr)),
      size_(std::exchange(o.size_, 0)),
      residency_(o.residency_),
      path_(std::move(o.path_)) {}

MappedFile& MappedFile::operator=(MappedFile&& o) noexcept {
  if (this != &o) {
    Unmap(data_, MappingBytes(size_, residency_));
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
    residency_ = o.residency_;
    path_ = std::move(o.path_);
  }
  return *this;
}

MappedFile::~MappedFile() { Unmap(data_, MappingBytes(size_, residency_)); }

}  // namespace qlm
