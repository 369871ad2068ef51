// XXH64 (Yann Collet's xxHash, 64-bit variant), written from its published
// specification: a fast non-cryptographic hash used for the .qlm file's
// header, metadata and per-tensor checksums. Detects corruption, not tampering.
#pragma once

#include <cstddef>
#include <cstdint>

namespace qlm {

// The hash of `size` bytes in one call.
uint64_t Xxh64(const void* data, size_t size, uint64_t seed = 0);

// The same hash over data that arrives in pieces: Update() any number of
// times, then Digest() (which does not change the state) equals Xxh64 of the
// concatenation.
class Xxh64Stream {
 public:
  explicit Xxh64Stream(uint64_t seed = 0);
  void Update(const void* data, size_t size);
  uint64_t Digest() const;

 private:
  uint64_t seed_;
  uint64_t v_[4];
  uint64_t total_ = 0;
  uint8_t buf_[32] = {};
  size_t buffered_ = 0;
};

}  // namespace qlm
