// Helpers shared by the libFuzzer targets in fuzz/.
//
// Contract of every target: the code under test may reject its input only by
// throwing qlm::Error (which the target catches). Anything else — a crash, a
// sanitizer report, another exception type escaping, a broken invariant
// (FUZZ_CHECK), a hang or a huge allocation — is a bug that libFuzzer reports.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

// Aborts (which libFuzzer reports as a crash, with the input saved) when an
// invariant the parsers promise does not hold for an accepted input.
#define FUZZ_CHECK(cond)                                                                 \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      std::fprintf(stderr, "%s:%d: FUZZ_CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                      \
    }                                                                                    \
  } while (0)

namespace qlm::fuzz {

// Reads every byte of [p, p + n) so that AddressSanitizer reports a view that
// reaches outside the memory it should point into. Returns a value that
// depends on the bytes so the reads cannot be optimized away.
inline uint64_t Touch(const void* p, uint64_t n) {
  const auto* b = static_cast<const volatile uint8_t*>(p);
  uint64_t h = 0;
  for (uint64_t i = 0; i < n; ++i) h = h * 31 + b[i];
  return h;
}

// Whether [p, p + n) lies inside [base, base + size).
inline bool Inside(const void* p, uint64_t n, const void* base, uint64_t size) {
  const auto a = reinterpret_cast<uintptr_t>(p), lo = reinterpret_cast<uintptr_t>(base);
  return a >= lo && a - lo <= size && n <= size - (a - lo);
}

// Consumes the fuzzer's bytes from the front: small integers for the
// structure, the rest as payload. Reads past the end give zeros, so every
// input maps to exactly one test case.
class Input {
 public:
  Input(const uint8_t* data, size_t size) : p_(data), n_(size) {}
  uint8_t Byte() {
    if (n_ == 0) return 0;
    --n_;
    return *p_++;
  }
  uint32_t U16() { return Byte() | static_cast<uint32_t>(Byte()) << 8; }
  uint32_t U32() { return U16() | U16() << 16; }
  // Up to `n` bytes (fewer at the end of the input).
  std::string_view Take(size_t n) {
    if (n > n_) n = n_;
    std::string_view s(reinterpret_cast<const char*>(p_), n);
    p_ += n;
    n_ -= n;
    return s;
  }
  std::string_view Rest() { return Take(n_); }
  size_t left() const { return n_; }

 private:
  const uint8_t* p_;
  size_t n_;
};

}  // namespace qlm::fuzz
