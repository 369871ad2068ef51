// qlm's own single-file model format (.qlm): a fixed header, tensor data
// each aligned to 64 bytes, and a JSON metadata block (model config, the
// embedded tokenizer, the quantization recipe and the tensor directory),
// padded to the page size. docs/formats.md ("The .qlm file") is the
// byte-level specification.
//
// Loading is mmap + pointer setup: every QTensor the reader returns points
// straight into the mapping (no copy, no per-tensor buffer). The reader is a
// pure function over (bytes, size) so it can be fuzzed: it never reads
// outside the buffer and reports every inconsistency as a qlm::Error naming
// the file and, where there is one, the tensor.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "loaders/mapped_file.h"
#include "loaders/xxh64.h"
#include "quant/format.h"

namespace qlm {

inline constexpr uint8_t kQlmMagic[8] = {0x89, 'Q', 'L', 'M', '\r', '\n', 0x1a, '\n'};
inline constexpr uint32_t kQlmVersion = 1;
inline constexpr uint32_t kQlmEndianCheck = 0x0A0B0C0D;  // bytes 0D 0C 0B 0A on disk
inline constexpr size_t kQlmHeaderBytes = 128;
inline constexpr size_t kQlmPageBytes = 4096;  // the file's size is a multiple of this
// Largest metadata block accepted: bounds what a hostile file can make the
// JSON parser allocate (a 256k-tensor directory is far below this).
inline constexpr size_t kQlmMaxMetadataBytes = 256u << 20;

// What a .qlm file says besides its tensors.
struct QlmFileMetadata {
  std::string config_json;             // the source model's config.json, verbatim
  std::string generation_config_json;  // generation_config.json, "" if none
  std::string recipe_json = "{}";      // the quantization recipe: a JSON object
};

// One tensor of a parsed file.
struct QlmTensorEntry {
  std::string name;
  std::vector<int64_t> shape;  // as written: [cols] (then rows = 1) or [rows, cols]
  QTensor view;                // points into the file's bytes
  uint64_t offset = 0;         // of the blob, from the start of the file
  uint64_t bytes = 0;          // == view.desc.total_bytes
  uint64_t checksum = 0;       // XXH64 (seed 0) of the blob's `bytes` bytes
};

struct QlmContents {
  uint32_t version = 0;
  QlmFileMetadata metadata;
  std::string_view tokenizer_proto;  // serialized SentencePiece ModelProto ("" if none)
  uint64_t tokenizer_offset = 0;
  uint64_t tokenizer_checksum = 0;
  std::vector<QlmTensorEntry> tensors;  // in file order
  std::map<std::string, size_t> index;  // name -> position in `tensors`

  const QlmTensorEntry* Find(const std::string& name) const;
};

struct QlmReadOptions {
  // Hash every tensor against the directory's checksum (costs a read of the
  // whole file). The header, metadata and tokenizer checksums are always
  // verified.
  bool verify_checksums = false;
  // QlmFile::Open: map the file (default) or read it into memory.
  FileReadOptions file = {};
};

// Parses and validates a whole .qlm file held in memory (`source` names it
// in messages). Checks magic, version, endianness, header checksum, file
// size, every offset and size (without overflow), metadata checksum and
// JSON, each tensor's format/shape/group size against its byte size, 64-byte
// alignment, that no two sections overlap, and every q4 permutation (so a
// kernel can never gather outside the activation vector). The views are
// 64-byte aligned in memory when `data` is.
QlmContents ParseQlmFile(const uint8_t* data, size_t size, const std::string& source,
                         const QlmReadOptions& options = {});

// Hashes every tensor; throws naming the first mismatch.
void VerifyQlmChecksums(const QlmContents& contents, const std::string& source);

// A mapped .qlm file. Move-only; the views stay valid while it lives.
class QlmFile {
 public:
  static QlmFile Open(const std::string& path, const QlmReadOptions& options = {});
  const QlmContents& contents() const { return contents_; }
  const std::string& path() const { return file_.path(); }
  size_t mapped_bytes() const { return file_.size(); }
  size_t read_bytes() const { return file_.read_bytes(); }  // mapped_bytes() if read, else 0

 private:
  MappedFile file_;
  QlmContents contents_;
};

// Whether `path` starts with the .qlm magic (false for a directory or an
// unreadable/short file).
bool LooksLikeQlmFile(const std::string& path);

// Writes a .qlm file one tensor at a time, in bounded memory: tensor bytes go
// to disk as they are added (and are hashed on the way); the directory is
// written at the end. The file is written as PATH.partial and renamed to
// PATH by Finish(); destroying an unfinished writer removes the partial file.
class QlmFileWriter {
 public:
  // Creates PATH.partial and writes the tokenizer (`tokenizer_proto` may be
  // empty). Throws qlm::Error naming the path on any I/O failure, or if
  // metadata.recipe_json is not a JSON object.
  QlmFileWriter(const std::string& path, const QlmFileMetadata& metadata,
                std::string_view tokenizer_proto);
  QlmFileWriter(const QlmFileWriter&) = delete;
  QlmFileWriter& operator=(const QlmFileWriter&) = delete;
  ~QlmFileWriter();

  // Appends one tensor. `shape` is [cols] (only when rows = 1) or
  // [rows, cols]; `t.desc` must be the layout MakeTensorDesc gives, and each
  // of t's present sections must hold its desc size in bytes (they need not
  // be one blob: a view into a safetensors mapping works). Throws for a
  // duplicate or empty name or an inconsistent shape/descriptor.
  void AddTensor(const std::string& name, std::span<const int64_t> shape, const QTensor& t);

  // Writes the metadata block, pads the file, writes the header, and
  // renames PATH.partial to PATH. Returns the file's size.
  uint64_t Finish();

  uint64_t bytes_written() const { return offset_; }

 private:
  void Write(const void* p, size_t n, Xxh64Stream* hash);
  void PadTo(uint64_t offset, Xxh64Stream* hash);

  std::string path_, partial_path_;
  std::FILE* file_ = nullptr;
  uint64_t offset_ = 0;
  bool finished_ = false;
  QlmFileMetadata metadata_;
  uint64_t tokenizer_bytes_ = 0, tokenizer_checksum_ = 0;
  struct Entry {
    std::string name;
    std::vector<int64_t> shape;
    TensorDesc desc;
    uint64_t offset, checksum;
  };
  std::vector<Entry> entries_;
  std::map<std::string, size_t> names_;
};

}  // namespace qlm
