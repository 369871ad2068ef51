// Writing a model as one .qlm file (what `qlm quantize` does): every tensor
// of a ModelSource, converted by the quantization policy
//   2-D weights (the layer linears, the embedding, the output head; a tied
//   table is one tensor) -> `format`; 1-D weights (norms) -> f32,
// streamed to disk one tensor at a time (QlmFileWriter), so memory holds
// one converted tensor at a time.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include "core/model_source.h"
#include "quant/format.h"
#include "quant/quantize.h"

namespace qlm {

class ThreadPool;

struct ExportOptions {
  Format format = Format::kQ4;
  QuantizeOptions quantize;  // q4: group size (0 = 128) and asymmetric
  // The embedding and output head ("model.embed_tokens.weight",
  // "lm_head.weight") in this format instead of `format` (nullopt: same).
  std::optional<Format> head_format;
  std::string recipe_json = "{}";
  ThreadPool* pool = nullptr;
  // Tensors solved elsewhere (GPTQ), by name: written as they are and
  // released as soon as they are on disk.
  std::map<std::string, QuantizedTensor>* solved = nullptr;
};

struct ExportedTensor {
  std::string name;
  size_t index = 0, total = 0;
  Format format = Format::kF32;
  // "gptq" (solved), "copy" (already in the wanted format, e.g. a repacked
  // AutoGPTQ linear to q4: bit-exact), "rtn" (matrix rounded to nearest),
  // "vector" (1-D, f32).
  std::string how;
  uint64_t bytes = 0;
};
using ExportProgress = std::function<void(const ExportedTensor&)>;

struct ExportSummary {
  uint64_t file_bytes = 0;
  size_t tensors = 0;
  uint64_t matrix_weights = 0, matrix_bytes = 0;  // 2-D tensors
  uint64_t vector_bytes = 0;
  double bits_per_weight() const {
    return matrix_weights ? 8.0 * static_cast<double>(matrix_bytes) / double(matrix_weights) : 0;
  }
};

// Writes `src` to `path` (with its config, generation config and tokenizer
// proto). Tensors are written in natural name order ("layers.2" before
// "layers.10"). Throws qlm::Error naming the tensor or file.
ExportSummary ExportQlm(const ModelSource& src, std::string_view tokenizer_proto,
                        const std::string& path, const ExportOptions& options,
                        const ExportProgress& progress = {});

}  // namespace qlm
