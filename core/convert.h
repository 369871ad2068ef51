// Converting a weight matrix to one of qlm's formats (round-to-nearest), in
// parallel over row ranges: what `--quant` does at load time and what
// `qlm quantize` does per tensor. The source is either a stored tensor (a
// safetensors view in F32, BF16 or F16) or a tensor already in a qlm format
// (a .qlm or repacked GPTQ tensor, decoded with DequantizeRow).
#pragma once

#include <cstdint>
#include <string>

#include "loaders/weight_store.h"
#include "quant/format.h"
#include "quant/quantize.h"

namespace qlm {

class ThreadPool;

struct ConvertSource {
  std::string name;  // for messages
  uint64_t rows = 0, cols = 0;
  const StoredTensor* stored = nullptr;  // either this (numel == rows · cols) ...
  const QTensor* view = nullptr;         // ... or this (desc.rows/cols == rows/cols)

  // Rows [r0, r1) as f32, original input order, into out[(r1 − r0) · cols].
  void ReadRows(uint64_t r0, uint64_t r1, float* out) const;
};

// Converts `src` to `format` (q4 uses options.group_size / asymmetric; a
// permutation is not applied). Rows are processed in blocks split over
// `pool` (null = this thread); sfp8 first finds max|w| the same way.
// Throws qlm::Error naming src.name for an unsupported source dtype.
QuantizedTensor ConvertTensor(const ConvertSource& src, Format format,
                              const QuantizeOptions& options, ThreadPool* pool);

}  // namespace qlm
