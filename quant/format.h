// Weight formats and the tensor descriptor shared by loaders, kernels and the
// .qlm file. docs/formats.md is the byte-level specification; this header is
// its executable form.
//
// Every quantized tensor is ONE contiguous blob of sections, each starting at
// a 64-byte-aligned offset (offsets are relative to the blob start):
//   data    rows × row_bytes            codes (row-major; rows padded, see below)
//   scales  rows × groups_per_row f16   int8, q4
//   zeros   rows × groups_per_row u8    q4 only (zero point 0..15, always stored)
//   perm    cols int32                  q4 with act-order only
// A linear weight is [rows = N out, cols = K in]; y = W · x.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "base/aligned_buffer.h"

namespace qlm {

enum class Format : uint8_t { kF32 = 0, kBF16 = 1, kInt8 = 2, kQ4 = 3, kSFP8 = 4 };
inline constexpr int kNumFormats = 5;

// "f32", "bf16", "int8", "q4", "sfp8".
const char* FormatName(Format f);
// Accepts the canonical names above; nullopt for anything else.
std::optional<Format> ParseFormat(std::string_view name);

// int8: symmetric, one f16 scale per 32 consecutive inputs of a row.
inline constexpr uint32_t kInt8GroupSize = 32;
// q4: codes are packed in blocks of 64 inputs = 32 bytes. Byte j of a block
// holds input j in its low nibble and input j + 32 in its high nibble, so one
// 32-byte load yields inputs 0..31 (& 0x0F) and 32..63 (>> 4).
inline constexpr uint32_t kQ4BlockSize = 64;
inline constexpr uint32_t kQ4DefaultGroupSize = 128;
// sfp8: one byte per weight, one f32 scale per tensor (TensorDesc::tensor_scale).
inline constexpr float kSfp8MaxMagnitude = 1.875f;

struct TensorDesc {
  Format format = Format::kF32;
  uint64_t rows = 0;  // N (outputs). A 1-D tensor has rows = 1.
  uint64_t cols = 0;  // K (inputs), logical (unpadded).
  // Inputs per scale: 32 for int8; 32, 64 or 128 for q4; 0 for f32/bf16/sfp8.
  uint32_t group_size = 0;
  // q4 only: the input dimension is stored permuted (GPTQ act-order). Stored
  // column j holds original input perm[j]; kernels gather x[perm[j]].
  bool has_perm = false;
  // sfp8 only: weight = Sfp8Decode(code) * tensor_scale.
  float tensor_scale = 1.0f;

  // Layout, filled in by MakeTensorDesc. Rows of int8 are padded to a
  // multiple of 32 inputs, rows of q4 to a multiple of 64; padding codes
  // decode to exactly 0 (int8 code 0; q4 code == the group's zero point).
  uint64_t padded_cols = 0;
  uint64_t groups_per_row = 0;
  uint64_t row_bytes = 0;
  uint64_t data_offset = 0, data_bytes = 0;
  uint64_t scales_offset = 0, scales_bytes = 0;
  uint64_t zeros_offset = 0, zeros_bytes = 0;
  uint64_t perm_offset = 0, perm_bytes = 0;
  uint64_t total_bytes = 0;  // the blob's size (multiple of 64)
};

// Computes the layout fields. Throws qlm::Error on an invalid combination
// (e.g. q4 with a group size other than 32/64/128, zero-sized shape).
TensorDesc MakeTensorDesc(Format format, uint64_t rows, uint64_t cols, uint32_t group_size = 0,
                          bool has_perm = false);

// A non-owning view of one tensor: what kernels read. Pointers into a blob
// laid out as described by `desc` (null where the section is absent).
struct QTensor {
  TensorDesc desc;
  const uint8_t* data = nullptr;
  const uint16_t* scales = nullptr;  // f16 bits
  const uint8_t* zeros = nullptr;
  const int32_t* perm = nullptr;
};

QTensor ViewTensor(const TensorDesc& desc, const uint8_t* blob);

// An owning tensor: descriptor + 64-byte-aligned blob.
struct QuantizedTensor {
  TensorDesc desc;
  AlignedBuffer blob;
  QTensor view() const { return ViewTensor(desc, blob.data()); }
};

}  // namespace qlm
