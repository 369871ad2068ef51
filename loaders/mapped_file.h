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
// read up front into memory this process allocates. Why both: the page
// cache maps only part of a file with 2 MiB pages (47-69 % of the bench
// models on the Zen 5 VM), and on VMs where a TLB miss is dear decode reads
// the same bytes much slower through the mapping (docs/benchmarks.md: int8
// at 2 threads 4.8 vs 7.7 t/s on an Emerald Rapids VM; bf16 62-71 % vs
// 76-94 % of the bandwidth probe on a Zen 5 VM; no difference on Zen 4).
enum class FileResidency { kMapped, kRead };

// Progress of a kRead copy, called after each piece of the file is read:
// `done` of `total` bytes of `path`.
using ReadProgressFn = std::function<void(size_t done, size_t total, const std::string& path)>;

class MappedFile {
 public:
  MappedFile() = default;
  // Throws qlm::Error naming the path if it cannot be opened, mapped, read
  // (kRead: also if it is shorter than its size at open) or allocated.
  // `progress` (kRead only, may be empty) follows the read.
  static MappedFile Open(const std::string& path, FileResidency residency = FileResidency::kMapped,
                         const ReadProgressFn& progress = {});
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  MappedFile(MappedFile&& o) noexcept;
  MappedFile& operator=(MappedFile&& o) noexcept;
  ~MappedFile();

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }
  FileResidency residency() const { return residency_; }

 private:
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  FileResidency residency_ = FileResidency::kMapped;
  std::string path_;
};

}  // namespace qlm
