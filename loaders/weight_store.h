// The weight store: owns the mmaps of a model's files and hands out views of
// the tensors stored in them. Tensors are never copied here; core decides
// whether a stored tensor can be used in place or must be converted.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "loaders/mapped_file.h"

namespace qlm {

// On-disk element types (safetensors dtype names).
enum class DType : uint8_t { kF32, kBF16, kF16, kI32 };
const char* DTypeName(DType d);
size_t DTypeSize(DType d);

struct StoredTensor {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  // Inside a mapping, bounds-checked at open (bytes may be 0).
  // Not necessarily aligned to the element size (the format does not require
  // it), so read through memcpy or unaligned loads.
  const uint8_t* data = nullptr;
  size_t bytes = 0;
  int64_t numel() const;
};

class WeightStore {
 public:
  // An HF model directory: model.safetensors, or the shards listed in
  // model.safetensors.index.json. Throws qlm::Error naming the file.
  // `files`: map every file (default) or read it into memory
  // (loaders/mapped_file.h).
  static WeightStore OpenHfDir(const std::string& dir, const FileReadOptions& files = {});
  // One safetensors file.
  static WeightStore OpenSafetensors(const std::string& path, const FileReadOptions& files = {});

  // nullptr if absent.
  const StoredTensor* Find(const std::string& name) const;
  // Throws qlm::Error "missing tensor NAME in DIR" if absent.
  const StoredTensor& Get(const std::string& name) const;
  const std::map<std::string, StoredTensor>& tensors() const { return tensors_; }
  size_t mapped_bytes() const;  // bytes of the weight files, mapped or read
  size_t read_bytes() const;    // of those, the files held as read copies
  // The directory or file the store was opened from (used in messages).
  const std::string& source() const { return source_; }
  // The file that holds tensor `name` ("" if absent).
  const std::string& FileOf(const std::string& name) const;

 private:
  // Maps one safetensors file and adds its tensors; throws on a malformed
  // file or on a tensor name already added from another file.
  void AddFile(MappedFile file);

  std::vector<MappedFile> files_;
  std::map<std::string, StoredTensor> tensors_;
  std::map<std::string, std::string> tensor_files_;  // tensor name -> file path
  std::string source_;
};

}  // namespace qlm
