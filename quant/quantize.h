// Round-to-nearest quantizers and scalar reference decoders for every format.
// These are the ground truth the SIMD kernels are tested against.
// docs/formats.md states the rounding, clamping and NaN/Inf rules exactly.
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

// ---- Building blocks for quantizing in parallel / in place. ----
//
// Quantize() is exactly: t = AllocateQuantized(...); for sfp8
// t.desc.tensor_scale = Sfp8TensorScale(w, rows * cols); then
// QuantizeRowsInto(w, 0, rows, t, options). Row ranges are independent: a
// thread pool may quantize disjoint [row_begin, row_end) ranges concurrently.

// Throws qlm::Error unless perm[0..cols) holds every value 0..cols-1 once.
void ValidatePermutation(const int32_t* perm, uint64_t cols);

// A tensor with its layout computed and a zeroed blob; options.perm (q4 only)
// is validated and copied into the blob's perm section. For sfp8 the caller
// must set desc.tensor_scale (Sfp8TensorScale) before quantizing rows.
QuantizedTensor AllocateQuantized(Format format, uint64_t rows, uint64_t cols,
                                  const QuantizeOptions& options = {});

// sfp8 per-tensor scale: max|w| / 1.875 over the finite weights, so that the
// largest finite weight encodes as ±1.875. 1.0 when no finite weight is
// nonzero. Sfp8ScaleForMaxAbs is the same from a precomputed max|w|.
float Sfp8TensorScale(const float* w, uint64_t n);
float Sfp8ScaleForMaxAbs(float max_abs);

// Quantizes rows [row_begin, row_end) of t; w_rows points at row row_begin of
// the original row-major f32 matrix (original input order, `cols` floats per
// row). Reads group size, permutation (from the blob) and sfp8 tensor_scale
// from t; of the options only `asymmetric` is used. Writes only those rows'
// codes, scales and zeros, including their padding.
void QuantizeRowsInto(const float* w_rows, uint64_t row_begin, uint64_t row_end, QuantizedTensor& t,
                      const QuantizeOptions& options = {});
// The same into a caller-owned blob of desc.total_bytes bytes (e.g. a file
// mapping); the perm section, if any, must already hold a valid permutation.
void QuantizeRowsInto(const float* w_rows, uint64_t row_begin, uint64_t row_end,
                      const TensorDesc& desc, uint8_t* blob, const QuantizeOptions& options = {});

}  // namespace qlm
