#include "loaders/xxh64.h"

#include <bit>
#include <cstring>

namespace qlm {
namespace {

constexpr uint64_t kP1 = 0x9E3779B185EBCA87ull;
constexpr uint64_t kP2 = 0xC2B2AE3D27D4EB4Full;
constexpr uint64_t kP3 = 0x165667B19E3779F9ull;
constexpr uint64_t kP4 = 0x85EBCA77C2B2AE63ull;
constexpr uint64_t kP5 = 0x27D4EB2F165667C5ull;

// The spec reads lanes little-endian; qlm only runs on little-endian hosts.
static_assert(std::endian::native == std::endian::little);

inline uint64_t Read64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

inline uint32_t Read32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

inline uint64_t Round(uint64_t acc, uint64_t input) {
  acc += input * kP2;
  acc = std::rotl(acc, 31);
  return acc * kP1;
}

inline uint64_t MergeRound(uint64_t acc, uint64_t val) {
  acc ^= Round(0, val);
  return acc * kP1 + kP4;
}

inline void InitLanes(uint64_t seed, uint64_t v[4]) {
  v[0] = seed + kP1 + kP2;
  v[1] = seed + kP2;
  v[2] = seed;
  v[3] = seed - kP1;
}

// Consumes whole 32-byte stripes of [p, p + n); returns the bytes consumed.
inline size_t Stripes(uint64_t v[4], const uint8_t* p, size_t n) {
  size_t done = 0;
  for (; n - done >= 32; done += 32) {
    v[0] = Round(v[0], Read64(p + done));
    v[1] = Round(v[1], Read64(p + done + 8));
    v[2] = Round(v[2], Read64(p + done + 16));
    v[3] = Round(v[3], Read64(p + done + 24));
  }
  return done;
}

inline uint64_t Converge(const uint64_t v[4]) {
  uint64_t h = std::rotl(v[0], 1) + std::rotl(v[1], 7) + std::rotl(v[2], 12) + std::rotl(v[3], 18);
  for (int i = 0; i < 4; ++i) h = MergeRound(h, v[i]);
  return h;
}

// The tail (< 32 bytes) and the final avalanche.
uint64_t Finalize(uint64_t h, const uint8_t* p, size_t n) {
  const uint8_t* const end = p + n;
  while (end - p >= 8) {
    h ^= Round(0, Read64(p));
    h = std::rotl(h, 27) * kP1 + kP4;
    p += 8;
  }
  if (end - p >= 4) {
    h ^= static_cast<uint64_t>(Read32(p)) * kP1;
    h = std::rotl(h, 23) * kP2 + kP3;
    p += 4;
  }
  while (p < end) {
    h ^= static_cast<uint64_t>(*p) * kP5;
    h = std::rotl(h, 11) * kP1;
    ++p;
  }
  h ^= h >> 33;
  h *= kP2;
  h ^= h >> 29;
  h *= kP3;
  h ^= h >> 32;
  return h;
}

}  // namespace

uint64_t Xxh64(const void* data, size_t size, uint64_t seed) {
  const auto* p = static_cast<const uint8_t*>(data);
  uint64_t h;
  size_t done = 0;
  if (size >= 32) {
    uint64_t v[4];
    InitLanes(seed, v);
    done = Stripes(v, p, size);
    h = Converge(v);
  } else {
    h = seed + kP5;
  }
  h += static_cast<uint64_t>(size);
  return Finalize(h, p + done, size - done);
}

Xxh64Stream::Xxh64Stream(uint64_t seed) : seed_(seed) { InitLanes(seed, v_); }

void Xxh64Stream::Update(const void* data, size_t size) {
  if (size == 0) return;
  const auto* p = static_cast<const uint8_t*>(data);
  total_ += size;
  if (buffered_ > 0) {
    const size_t take = size < 32 - buffered_ ? size : 32 - buffered_;
    std::memcpy(buf_ + buffered_, p, take);
    buffered_ += take;
    p += take;
    size -= take;
    if (buffered_ < 32) return;
    Stripes(v_, buf_, 32);
    buffered_ = 0;
  }
  const size_t done = Stripes(v_, p, size);
  if (size > done) std::memcpy(buf_, p + done, size - done);
  buffered_ = size - done;
}

uint64_t Xxh64Stream::Digest() const {
  uint64_t h = total_ >= 32 ? Converge(v_) : seed_ + kP5;
  h += total_;
  return Finalize(h, buf_, buffered_);
}

}  // namespace qlm
