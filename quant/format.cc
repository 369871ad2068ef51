#include "quant/format.h"

#include <string>

#include "base/error.h"

namespace qlm {
namespace {

uint64_t RoundUp(uint64_t n, uint64_t m) { return (n + m - 1) / m * m; }

// a * b, throwing instead of wrapping: shapes come from untrusted files.
uint64_t CheckedMul(uint64_t a, uint64_t b) {
  uint64_t r = 0;
  if (__builtin_mul_overflow(a, b, &r)) throw Error("tensor shape overflows 64-bit byte size");
  return r;
}

}  // namespace

const char* FormatName(Format f) {
  switch (f) {
    case Format::kF32:
      return "f32";
    case Format::kBF16:
      return "bf16";
    case Format::kInt8:
      return "int8";
    case Format::kQ4:
      return "q4";
    case Format::kSFP8:
      return "sfp8";
  }
  return "unknown";
}

std::optional<Format> ParseFormat(std::string_view name) {
  for (int i = 0; i < kNumFormats; ++i) {
    const auto f = static_cast<Format>(i);
    if (name == FormatName(f)) return f;
  }
  return std::nullopt;
}

TensorDesc MakeTensorDesc(Format format, uint64_t rows, uint64_t cols, uint32_t group_size,
                          bool has_perm) {
  // 2^40 elements per dimension is far beyond any real model and keeps every
  // later product of two dimensions and a small element size inside 64 bits.
  constexpr uint64_t kMaxDim = uint64_t{1} << 40;
  if (rows == 0 || cols == 0 || rows > kMaxDim || cols > kMaxDim) {
    throw Error("invalid tensor shape [" + std::to_string(rows) + ", " + std::to_string(cols) +
                "]");
  }
  if (has_perm && format != Format::kQ4) {
    throw Error(std::string("an input permutation is only supported for q4, not ") +
                FormatName(format));
  }
  TensorDesc d;
  d.format = format;
  d.rows = rows;
  d.cols = cols;
  d.has_perm = has_perm;
  d.padded_cols = cols;
  switch (format) {
    case Format::kF32:
      d.row_bytes = CheckedMul(cols, 4);
      break;
    case Format::kBF16:
      d.row_bytes = CheckedMul(cols, 2);
      break;
    case Format::kSFP8:
      d.row_bytes = cols;
      break;
    case Format::kInt8:
      d.group_size = kInt8GroupSize;
      d.padded_cols = RoundUp(cols, kInt8GroupSize);
      d.row_bytes = d.padded_cols;
      break;
    case Format::kQ4:
      if (group_size == 0) group_size = kQ4DefaultGroupSize;
      if (group_size != 32 && group_size != 64 && group_size != 128) {
        throw Error("q4 group size must be 32, 64 or 128, got " + std::to_string(group_size));
      }
      d.group_size = group_size;
      d.padded_cols = RoundUp(cols, kQ4BlockSize);
      d.row_bytes = d.padded_cols / 2;
      break;
  }
  if (d.group_size != 0) d.groups_per_row = (d.padded_cols + d.group_size - 1) / d.group_size;

  uint64_t offset = 0;
  auto section = [&](uint64_t bytes, uint64_t& off, uint64_t& size) {
    off = offset;
    size = bytes;
    offset = RoundUp(offset + bytes, kAlignment);
  };
  section(CheckedMul(rows, d.row_bytes), d.data_offset, d.data_bytes);
  if (format == Format::kInt8 || format == Format::kQ4) {
    section(CheckedMul(CheckedMul(rows, d.groups_per_row), 2), d.scales_offset, d.scales_bytes);
  }
  if (format == Format::kQ4) {
    section(CheckedMul(rows, d.groups_per_row), d.zeros_offset, d.zeros_bytes);
  }
  if (has_perm) section(CheckedMul(cols, 4), d.perm_offset, d.perm_bytes);
  d.total_bytes = offset;
  return d;
}

QTensor ViewTensor(const TensorDesc& desc, const uint8_t* blob) {
  QTensor t;
  t.desc = desc;
  t.data = blob + desc.data_offset;
  if (desc.scales_bytes) t.scales = reinterpret_cast<const uint16_t*>(blob + desc.scales_offset);
  if (desc.zeros_bytes) t.zeros = blob + desc.zeros_offset;
  if (desc.perm_bytes) t.perm = reinterpret_cast<const int32_t*>(blob + desc.perm_offset);
  return t;
}

}  // namespace qlm
