// A read-only view of a whole file's bytes, owned and move-only: either a
// memory mapping of the file (FileResidency::kMapped: `--mmap`, and what
// the loaders default to) or a copy read into anonymous memory on 2 MiB
// pages (kRead: what Model::Load defaults to).
// If a mapped file shrinks while mapped (another program truncates it),
// touching the lost pages raises SIGBUS; for an address inside a live
// MappedFile the process then prints "error: PATH changed while it was
// mapped ..." and exits with status 1 instead of dying by the signal
// (mapped_file.cc). A read copy cannot change under the process.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

namespace qlm {

// kMapped: pages come from the page cache on first touch, start-up is
// instant and several processes share one copy. kRead: the whole file is
// read up front into memory this process allocates. Why both: on two of
// three VMs measured, decode read the same bytes much slower through the
// mapping (docs/benchmarks.md: int8 at 2 threads 4.8 vs 7.7 t/s on an
// Emerald Rapids VM; bf16 62-71 % vs 76-94 % of the bandwidth probe on a
// Zen 5 VM, where the page cache mapped only 47-69 % of the model files
// with 2 MiB pages; no difference on Zen 4), and the mapping's speed
// depends on where the page cache happened to put the file.
enum class FileResidency { kMapped, kRead };

// Whether a read copy of a `file_bytes` file leaves room for the rest of
// the process (KV cache, scratch, other files) when the system can give it
// `available_bytes` without swapping: file + 1/8 + 512 MiB must fit.
bool ReadCopyFits(size_t file_bytes, size_t available_bytes);
// MemAvailable of /proc/meminfo in bytes; SIZE_MAX where it is unknown.
size_t AvailableMemoryBytes();

// Progress of a kRead copy, called on the opening thread as pieces of the
// file arrive: `done` of `total` bytes of `path`.
using ReadProgressFn = std::function<void(size_t done, size_t total, const std::string& path)>;

// How MappedFile::Open holds a file (and the loaders above it, each file).
struct FileReadOptions {
  FileResidency residency = FileResidency::kMapped;
  // kRead: threads that read pieces of a large file at once, the caller
  // included (0 counts as 1). Two threads read a 2.8 GB file from the page
  // cache in 0.20 s against 0.33-0.57 s for one, and 2.7 s against 5.2 s
  // when the VM had to back the memory again (Zen 5 VM, docs/benchmarks.md).
  size_t threads = 1;
  ReadProgressFn progress = {};  // kRead only; may be empty
};

class MappedFile {
 public:
  MappedFile() = default;
  // Throws qlm::Error naming the path if it cannot be opened, mapped, read
  // (kRead: also if it is shorter than its size at open) or allocated.
  // options.progress follows a read. kRead maps a file whose copy would
  // not fit (ReadCopyFits with AvailableMemoryBytes) instead, so a model
  // larger than the free memory still runs, paged in from the file, rather
  // than being killed for memory; residency() says which happened.
  static MappedFile Open(const std::string& path, const FileReadOptions& options);
  static MappedFile Open(const std::string& path,
                         FileResidency residency = FileResidency::kMapped) {
    return Open(path, FileReadOptions{.residency = residency});
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  MappedFile(MappedFile&& o) noexcept;
  MappedFile& operator=(MappedFile&& o) noexcept;
  ~MappedFile();

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }
  FileResidency residency() const { return residency_; }
  // size() if held as a read copy, else 0.
  size_t read_bytes() const { return residency_ == FileResidency::kRead ? size_ : 0; }

 private:
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  FileResidency residency_ = FileResidency::kMapped;
  std::string path_;
};

}  // namespace qlm
