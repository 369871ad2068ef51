// Round-to-nearest quantizers and scalar reference decoders for every format.
// These are the ground truth the SIMD kernels are tested against.
#pragma once

#include <cstdint>

#include "quant/format.h"

namespace qlm {

struct QuantizeOptions {
  // q4: 32, 64 or 128 (0 = kQ4DefaultGroupSize). Ignored by other formats.
  uint32_t group_size = 0;
  // q4: asymmetric (per-group zero point from min/max) or symmetric (z = 8).
  bool asymmetric = true;
  // q4: optional act-order permutation of the input dimension, `cols` entries;
  // stored column j = original column perm[j]. Copied into the tensor.
  const int32_t* perm = nullptr;
};

// Quantizes a row-major [rows, cols] f32 matrix (original input order).
QuantizedTensor Quantize(Format format, const float* w, uint64_t rows, uint64_t cols,
                         const QuantizeOptions& options = {});

// Decodes one row into out[cols], in ORIGINAL input order (undoing perm).
void DequantizeRow(const QTensor& t, uint64_t row, float* out);

// Decodes one row into out[cols] in STORED order (no perm applied).
void DequantizeRowStored(const QTensor& t, uint64_t row, float* out);

}  // namespace qlm
