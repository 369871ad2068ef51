// Random-weight models of real shapes, written as Hugging Face directories
// (config.json, bf16 safetensors — sharded with model.safetensors.index.json
// when large — and a SentencePiece tokenizer.model), so benchmarks can run a
// Gemma-2-2B- or Llama-2-7B-sized model without downloading one.
//
// config.json carries the real model's hyper-parameters key for key; only
// the token ids follow the tokenizer that is copied in (qlm's Austen
// tokenizer: pad 0, eos 1, bos 2 — Gemma's ids, not Llama's 1/2) and
// torch_dtype says bfloat16, what the files hold. Tensor names and shapes are
// Hugging Face's for the architecture.
//
// Weights are uniform with the standard deviation of a sensible init, so
// activations stay finite: linear layers 1/sqrt(fan_in), embeddings and an
// untied lm_head 1/sqrt(hidden), RMSNorm weights within 0.05 of 0 for
// Gemma's x·(1 + w) and of 1 for Llama's x·w. Values come from a
// counter-based hash of (seed, tensor name, element index): the same seed
// gives the same bytes however the work is chunked.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "loaders/safetensors_writer.h"

namespace qlm {

struct RandomModelShapeInfo {
  std::string name;        // "gemma-2-2b"
  std::string source;      // the Hugging Face repository it mirrors
  std::string model_type;  // config.json's model_type
  uint64_t params = 0;     // total parameter count
  uint64_t bytes = 0;      // bf16 bytes of all tensors
  bool test_only = false;  // tiny shapes for tests, not listed by default
};

// Shapes in display order; test-only shapes only when asked for.
std::vector<RandomModelShapeInfo> RandomModelShapes(bool include_test_only);

// config.json text for `shape` (seed only goes into "_name_or_path").
// Unknown shape: qlm::UsageError listing the known ones.
std::string RandomModelConfigJson(const std::string& shape, uint64_t seed = 0);

// Every tensor of `shape`, in the order they are written.
std::vector<SafetensorsTensorSpec> RandomModelTensors(const std::string& shape);

struct RandomModelOptions {
  std::string shape;
  std::string out_dir;         // created if absent
  std::string tokenizer_path;  // tokenizer.model to copy in
  uint64_t seed = 0;
  // Largest safetensors file, header included (Hugging Face's "2GB").
  uint64_t max_shard_bytes = 2'000'000'000;
  // Replace a model already in out_dir (else that is an error).
  bool overwrite = false;
  // Called after every chunk with (bytes written, total bytes).
  std::function<void(uint64_t, uint64_t)> progress;
};

// Writes the model; throws qlm::Error naming the path on any failure (a
// missing tokenizer is checked before anything is written), qlm::UsageError
// for an unknown shape. config.json is written last, so a directory that
// has one holds a complete model.
void WriteRandomModel(const RandomModelOptions& options);

// Fills out[0, count) with bf16 values uniform in [center - amplitude,
// center + amplitude), element i taking its value from hash(key, first + i).
// `first` must be even (chunks split on element pairs).
void FillRandomBF16(uint16_t* out, size_t count, uint64_t key, uint64_t first, float center,
                    float amplitude);

}  // namespace qlm
