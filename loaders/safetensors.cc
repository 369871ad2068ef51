#include "loaders/safetensors.h"

#include <algorithm>
#include <limits>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "loaders/json_fields.h"

namespace qlm {
namespace {

using nlohmann::json;

[[noreturn]] void Fail(const std::string& source, const std::string& what) {
  throw Error("safetensors file " + source + ": " + what);
}

[[noreturn]] void FailTensor(const std::string& source, const std::string& tensor,
                             const std::string& what) {
  Fail(source, "tensor '" + tensor + "': " + what);
}

// A JSON value as a non-negative integer that fits `limit`; `what` names it.
uint64_t ToUnsigned(const json& v, uint64_t limit, const std::string& source,
                    const std::string& tensor, const std::string& what) {
  if (v.is_number_unsigned()) {
    const uint64_t x = v.get<uint64_t>();
    if (x > limit) FailTensor(source, tensor, what + " " + std::to_string(x) + " is too large");
    return x;
  }
  if (v.is_number_integer()) {
    FailTensor(source, tensor, what + " is negative (" + std::to_string(v.get<int64_t>()) + ")");
  }
  FailTensor(source, tensor,
             what + " must be a non-negative integer, not " + json_fields::Describe(v));
}

SafetensorsEntry ParseEntry(const std::string& name, const json& info, size_t data_size,
                            const std::string& source) {
  if (!info.is_object()) {
    FailTensor(source, name, std::string("entry must be a JSON object, not ") + info.type_name());
  }
  SafetensorsEntry e;
  e.name = name;

  const auto dtype = info.find("dtype");
  if (dtype == info.end()) FailTensor(source, name, "missing \"dtype\"");
  if (!dtype->is_string()) FailTensor(source, name, "\"dtype\" must be a string");
  e.dtype = ParseSafetensorsDType(dtype->get<std::string>(), name, source);

  const auto shape = info.find("shape");
  if (shape == info.end()) FailTensor(source, name, "missing \"shape\"");
  if (!shape->is_array()) FailTensor(source, name, "\"shape\" must be an array of integers");
  // numel is accumulated with overflow checks; a shape whose byte size does
  // not fit size_t cannot match any offsets in a real file.
  uint64_t numel = 1;
  bool overflow = false;
  e.shape.reserve(shape->size());
  for (const json& d : *shape) {
    const uint64_t dim = ToUnsigned(d, static_cast<uint64_t>(std::numeric_limits<int64_t>::max()),
                                    source, name, "shape dimension");
    e.shape.push_back(static_cast<int64_t>(dim));
    if (__builtin_mul_overflow(numel, dim, &numel)) overflow = true;
  }
  uint64_t nbytes = 0;
  if (overflow || __builtin_mul_overflow(numel, uint64_t{DTypeSize(e.dtype)}, &nbytes)) {
    FailTensor(source, name, "shape is too large (its byte size overflows)");
  }

  const auto offsets = info.find("data_offsets");
  if (offsets == info.end()) FailTensor(source, name, "missing \"data_offsets\"");
  if (!offsets->is_array() || offsets->size() != 2) {
    FailTensor(source, name, "\"data_offsets\" must be an array of two integers [begin, end]");
  }
  const uint64_t begin = ToUnsigned((*offsets)[0], std::numeric_limits<uint64_t>::max(), source,
                                    name, "data offset begin");
  const uint64_t end = ToUnsigned((*offsets)[1], std::numeric_limits<uint64_t>::max(), source, name,
                                  "data offset end");
  if (begin > end) {
    FailTensor(source, name,
               "data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                   "] end before they begin");
  }
  if (end > data_size) {
    FailTensor(source, name,
               "data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                   "] run past the data section (" + std::to_string(data_size) +
                   " bytes; the file is truncated or the header is wrong)");
  }
  if (end - begin != nbytes) {
    FailTensor(source, name,
               "shape and dtype " + std::string(DTypeName(e.dtype)) + " need " +
                   std::to_string(nbytes) + " bytes but data_offsets span " +
                   std::to_string(end - begin));
  }
  e.begin = static_cast<size_t>(begin);
  e.end = static_cast<size_t>(end);
  return e;
}

}  // namespace

DType ParseSafetensorsDType(const std::string& dtype, const std::string& tensor,
                            const std::string& source) {
  if (dtype == "F32") return DType::kF32;
  if (dtype == "BF16") return DType::kBF16;
  if (dtype == "F16") return DType::kF16;
  if (dtype == "I32") return DType::kI32;
  FailTensor(source, tensor,
             "dtype " + json(dtype).dump(-1, ' ', false, json::error_handler_t::replace) +
                 " is not supported (qlm reads F32, BF16, F16, I32)");
}

SafetensorsHeader ParseSafetensors(const uint8_t* data, size_t size, const std::string& source) {
  if (size < 8) {
    Fail(source, "is " + std::to_string(size) + " bytes, too short for the 8-byte header length");
  }
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | data[i];
  if (header_len > size - 8) {
    Fail(source, "header length " + std::to_string(header_len) + " is larger than the " +
                     std::to_string(size - 8) + " bytes that follow it (truncated file?)");
  }
  if (header_len > kSafetensorsMaxHeaderBytes) {
    Fail(source, "header length " + std::to_string(header_len) + " exceeds the " +
                     std::to_string(kSafetensorsMaxHeaderBytes) + "-byte limit");
  }
  if (header_len < 2 || data[8] != '{') {
    Fail(source, "header must be a JSON object starting with '{'");
  }

  SafetensorsHeader h;
  h.data_offset = 8 + static_cast<size_t>(header_len);
  h.data_size = size - h.data_offset;

  json header;
  try {
    header = json::parse(data + 8, data + h.data_offset);
  } catch (const json::exception& e) {
    Fail(source, std::string("header is not valid JSON: ") + e.what());
  }
  if (!header.is_object()) Fail(source, "header must be a JSON object");

  h.tensors.reserve(header.size());
  for (const auto& [name, info] : header.items()) {
    if (name == "__metadata__") {
      if (!info.is_object()) Fail(source, "\"__metadata__\" must be an object of strings");
      for (const auto& [key, value] : info.items()) {
        if (!value.is_string()) {
          Fail(source, "\"__metadata__\" value for '" + key + "' must be a string");
        }
        h.metadata.emplace(key, value.get<std::string>());
      }
      continue;
    }
    h.tensors.push_back(ParseEntry(name, info, h.data_size, source));
  }

  // The format requires the tensors to tile the data section exactly: no
  // overlap (two tensors aliasing bytes) and no holes (hidden payloads).
  std::sort(h.tensors.begin(), h.tensors.end(),
            [](const SafetensorsEntry& a, const SafetensorsEntry& b) {
              return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
            });
  size_t covered = 0;
  const SafetensorsEntry* prev = nullptr;
  for (const SafetensorsEntry& e : h.tensors) {
    if (e.begin < covered) {
      FailTensor(source, e.name,
                 "data_offsets [" + std::to_string(e.begin) + ", " + std::to_string(e.end) +
                     "] overlap tensor '" + prev->name + "' [" + std::to_string(prev->begin) +
                     ", " + std::to_string(prev->end) + "]");
    }
    if (e.begin > covered) {
      Fail(source, "data bytes [" + std::to_string(covered) + ", " + std::to_string(e.begin) +
                       ") belong to no tensor (the format allows no holes)");
    }
    covered = e.end;
    prev = &e;
  }
  if (covered != h.data_size) {
    Fail(source, "data bytes [" + std::to_string(covered) + ", " + std::to_string(h.data_size) +
                     ") after the last tensor belong to no tensor");
  }
  return h;
}

}  // namespace qlm
