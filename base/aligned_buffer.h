// A move-only, zero-initialised byte buffer with 64-byte alignment: the
// alignment every weight block and activation row in qlm assumes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>

#include <sys/mman.h>

namespace qlm {

inline constexpr size_t kAlignment = 64;
inline constexpr size_t kHugePageBytes = size_t{2} << 20;

inline constexpr size_t AlignUp(size_t n, size_t a = kAlignment) { return (n + a - 1) / a * a; }

class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(size_t bytes) { Resize(bytes); }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  AlignedBuffer(AlignedBuffer&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  AlignedBuffer& operator=(AlignedBuffer&& o) noexcept {
    if (this != &o) {
      std::free(data_);
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
    }
    return *this;
  }
  ~AlignedBuffer() { std::free(data_); }

  // Discards the old contents; the new bytes are zero.
  void Resize(size_t bytes) {
    std::free(data_);
    data_ = nullptr;
    size_ = bytes;
    if (bytes == 0) return;
    // Large buffers (weights converted at load, scratch, probe streams) go
    // on 2 MiB pages where the kernel allows it: on the Zen 4 VM one thread
    // streaming 1 GiB with AVX-512 loads read 29-31 GB/s on 2 MiB pages and
    // 21-22 GB/s on 4 KiB pages (same loop, A/B). Small buffers keep the
    // 64-byte alignment.
    const bool huge = bytes >= kHugePageBytes;
    const size_t align = huge ? kHugePageBytes : kAlignment;
    data_ = static_cast<uint8_t*>(std::aligned_alloc(align, AlignUp(bytes, align)));
    if (data_ == nullptr) throw std::bad_alloc();
    if (huge) madvise(data_, AlignUp(bytes, align), MADV_HUGEPAGE);  // a hint: failure is fine
    std::memset(data_, 0, AlignUp(bytes, align));
  }

  uint8_t* data() { return data_; }
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  template <class T>
  T* as() {
    return reinterpret_cast<T*>(data_);
  }
  template <class T>
  const T* as() const {
    return reinterpret_cast<const T*>(data_);
  }

 private:
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace qlm
