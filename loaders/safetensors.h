// The safetensors container format, parsed by hand:
//   [8 bytes] N, little-endian u64: the header length
//   [N bytes] a JSON object {name: {"dtype", "shape", "data_offsets": [begin, end]}, ...}
//             plus an optional "__metadata__" object of strings
//   [rest]    the data section; offsets are relative to its start
// The parser is a pure function over (bytes, size) so it can be fuzzed: it
// never reads outside [data, data + size), never allocates more than the
// header's size suggests, and reports every inconsistency as a qlm::Error that
// names the source and the tensor.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "loaders/weight_store.h"

namespace qlm {

struct SafetensorsEntry {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  // [begin, end) relative to the start of the data section.
  size_t begin = 0;
  size_t end = 0;
};

struct SafetensorsHeader {
  size_t data_offset = 0;                       // where the data section starts in the file: 8 + N
  size_t data_size = 0;                         // bytes in the data section
  std::vector<SafetensorsEntry> tensors;        // in data-offset order
  std::map<std::string, std::string> metadata;  // "__metadata__" (string values only)
};

// Largest header accepted (the reference implementation's limit): bounds the
// memory a hostile file can make the JSON parser allocate.
inline constexpr size_t kSafetensorsMaxHeaderBytes = 100u * 1000u * 1000u;

// Parses and validates a whole safetensors file held in memory. `source`
// names the file in error messages. Checks, without integer overflow:
// header length <= size - 8; the header is a JSON object; each entry has a
// string dtype among F32/BF16/F16/I32, a shape of non-negative integers and
// data_offsets of two integers; numel(shape) * dtype size == end - begin;
// begin <= end <= data size; tensors neither overlap nor leave holes and
// cover the data section exactly (as the format requires).
SafetensorsHeader ParseSafetensors(const uint8_t* data, size_t size, const std::string& source);

// The DType for a safetensors dtype string; throws naming `tensor` and the
// dtype if qlm does not support it.
DType ParseSafetensorsDType(const std::string& dtype, const std::string& tensor,
                            const std::string& source);

}  // namespace qlm
