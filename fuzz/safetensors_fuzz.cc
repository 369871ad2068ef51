// Fuzzes ParseSafetensors (loaders/safetensors.h): the input is a whole
// safetensors file. An accepted file must satisfy everything the parser
// promises: entries inside the data section, sizes matching shapes, tensors
// tiling the data section exactly.
#include <cstddef>
#include <cstdint>

#include "base/error.h"
#include "fuzz/fuzz_util.h"
#include "loaders/safetensors.h"

using qlm::fuzz::Touch;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  qlm::SafetensorsHeader h;
  try {
    h = qlm::ParseSafetensors(data, size, "fuzz.safetensors");
  } catch (const qlm::Error&) {
    return 0;
  }
  FUZZ_CHECK(h.data_offset >= 8 && h.data_offset <= size);
  FUZZ_CHECK(h.data_size == size - h.data_offset);
  const uint8_t* base = data + h.data_offset;
  size_t covered = 0;
  for (const qlm::SafetensorsEntry& e : h.tensors) {
    FUZZ_CHECK(e.begin == covered);  // sorted, no overlap, no hole
    FUZZ_CHECK(e.begin <= e.end && e.end <= h.data_size);
    uint64_t numel = 1;
    for (const int64_t d : e.shape) {
      FUZZ_CHECK(d >= 0);
      FUZZ_CHECK(!__builtin_mul_overflow(numel, static_cast<uint64_t>(d), &numel));
    }
    FUZZ_CHECK(numel * qlm::DTypeSize(e.dtype) == e.end - e.begin);
    qlm::StoredTensor t;  // what WeightStore hands out for this entry
    t.shape = e.shape;
    FUZZ_CHECK(static_cast<uint64_t>(t.numel()) == numel);
    Touch(base + e.begin, e.end - e.begin);
    covered = e.end;
  }
  FUZZ_CHECK(covered == h.data_size);
  return 0;
}
