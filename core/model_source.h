// What a model path holds, opened and mapped, before binding: a Hugging Face
// directory (safetensors), an AutoGPTQ directory (its 4-bit linears repacked
// into q4 here, never dequantized) or a single .qlm file (every tensor a view
// into the mapping). Model::Load and `qlm quantize` both start here.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "loaders/gptq.h"
#include "loaders/qlm_file.h"
#include "loaders/weight_store.h"
#include "quant/format.h"

namespace qlm {

class ThreadPool;

struct ModelSource {
  enum class Kind : uint8_t { kHfDir, kGptqDir, kQlmFile };
  Kind kind = Kind::kHfDir;
  std::string path;
  std::string config_json;             // config.json text
  std::string generation_config_json;  // "" if none
  // The tokenizer: a file (directories) or a serialized proto (.qlm, a view
  // into the mapping).
  std::string tokenizer_path;
  std::string_view tokenizer_proto;
  std::string recipe_json;  // .qlm: its quantization recipe; else ""

  WeightStore store;               // directories; empty for .qlm
  std::optional<QlmFile> qlm;      // .qlm
  std::optional<GptqConfig> gptq;  // AutoGPTQ directories
  // Tensors already in a kernel format, by Hugging Face name: every tensor
  // of a .qlm file; each GPTQ linear PREFIX as "PREFIX.weight" (q4).
  std::map<std::string, QTensor> prepared;
  std::vector<QuantizedTensor> owned;  // the repacked GPTQ linears
  size_t repacked_bytes = 0;
};

const char* ModelSourceKindName(ModelSource::Kind kind);  // "hf", "gptq", "qlm"

struct OpenSourceOptions {
  bool verify_checksums = false;  // .qlm: hash every tensor
  // Map the weight files (default) or read them into memory.
  FileReadOptions files = {};
  ThreadPool* pool = nullptr;  // GPTQ repacking split over rows
};

// Opens `path`: a .qlm file (recognised by its magic), or a directory with
// config.json (AutoGPTQ when its quantization_config / quantize_config.json
// says gptq). Throws qlm::Error naming the path and what is missing or wrong.
ModelSource OpenModelSource(const std::string& path, const OpenSourceOptions& options = {});

}  // namespace qlm
