// A read-only view of a whole file's bytes, owned and move-only: either a
// memory mapping of the file (FileResidency::kMapped, the default) or a
// copy read into anonymous memory on 2 MiB pages (kRead, `--no-mmap`).
// If a mapped file shrinks while mapped (another program truncates it),
// touching the lost pages raises SIGBUS; for an address inside a live
// MappedFile the process then prints "error: PATH changed while it was
// mapped ..." and exits with status 1 instead of dying by the signal
// (mapped_file.cc). A read copy cannot change under the process.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace qlm {

// kMapped: pages come from the page cache on first touch, start-up is
// instant and several processes share one copy. kRead: the whole file is
// read up front into memory this process allocates. Why both: where the
// page cache's physical pages sit can make decode much slower than the same
// bytes in freshly allocated memory (on the Emerald Rapids VM of
// docs/benchmarks.md, int8 decode at 2 threads ran 4.8 t/s from the
// mapping and 7.7 t/s from anonymous memory, same code, minutes apart).
enum class FileResidency { kMapped, kRead };

class MappedFile {
 public:
  MappedFile() = default;
  // Throws qlm::Error naming the path if it cannot be opened, mapped, read
  // (kRead: also if it is shorter than its size at open) or allocated.
  static MappedFile Open(const std::string& path, FileResidency residency = FileResidency::kMapped);
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
