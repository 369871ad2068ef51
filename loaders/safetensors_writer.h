// Writes safetensors files (the layout loaders/safetensors.h parses):
//   [8 bytes] N, little-endian u64
//   [N bytes] JSON header: {"__metadata__": {...}, name: {"dtype", "shape",
//             "data_offsets": [begin, end]}, ...}, padded with trailing
//             spaces (as the format allows) so the data section starts on an
//             8-byte boundary
//   [rest]    tensor bytes, back to back in declaration order, no holes
//
// Streaming: declare every tensor first, then write the bytes in declaration
// order in chunks of any size, so a multi-gigabyte file is produced with a
// bounded buffer. The file is written as PATH.tmp and renamed to PATH by
// Finish(); a writer destroyed before Finish() removes the partial file, so a
// failed run never leaves a truncated model behind.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "loaders/weight_store.h"

namespace qlm {

struct SafetensorsTensorSpec {
  std::string name;
  DType dtype = DType::kBF16;
  std::vector<int64_t> shape;
  // numel * element size; throws qlm::Error naming the tensor on a negative
  // dimension or an overflowing size.
  size_t bytes() const;
};

// The complete header block for `tensors` (in this order) and `metadata`: the
// 8-byte length followed by the space-padded JSON. Its size is a multiple
// of 8. Throws qlm::Error on a duplicate or empty name, or a name that
// collides with "__metadata__".
std::string EncodeSafetensorsHeader(const std::vector<SafetensorsTensorSpec>& tensors,
                                    const std::map<std::string, std::string>& metadata);

class SafetensorsWriter {
 public:
  // Nothing touches the disk until the first Write/WriteTensor/Finish.
  explicit SafetensorsWriter(std::string path);
  ~SafetensorsWriter();
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;

  // Declare tensors (before any bytes are written). Metadata defaults to
  // {"format": "pt"}, what PyTorch-saved Hugging Face files carry.
  void Declare(const std::string& name, DType dtype, std::vector<int64_t> shape);
  void SetMetadata(const std::string& key, const std::string& value);

  // Appends the next `bytes` of the data section (any chunking; tensors are
  // laid out in declaration order). Throws if this would pass the declared
  // total, or on an I/O error naming the file.
  void Write(const void* data, size_t bytes);
  // Writes one whole tensor; checks it is the next one due and its size.
  void WriteTensor(const std::string& name, const void* data, size_t bytes);

  // Checks every declared byte was written, flushes, closes and renames the
  // file into place. Throws qlm::Error naming the file otherwise.
  void Finish();

  const std::string& path() const { return path_; }
  size_t data_bytes() const { return total_bytes_; }  // the data section's size
  size_t bytes_written() const { return written_; }   // of the data section
  const std::vector<SafetensorsTensorSpec>& tensors() const { return tensors_; }

 private:
  void Open();  // writes the header on first use
  void Abandon() noexcept;

  std::string path_;
  std::string tmp_path_;
  std::vector<SafetensorsTensorSpec> tensors_;
  std::vector<size_t> ends_;  // data-section end offset of each tensor
  std::map<std::string, std::string> metadata_{{"format", "pt"}};
  std::FILE* file_ = nullptr;
  bool opened_ = false;
  bool finished_ = false;
  size_t total_bytes_ = 0;
  size_t written_ = 0;
};

}  // namespace qlm
