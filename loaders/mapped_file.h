// A read-only memory mapping of a whole file. Owns the mapping; move-only.
// If the file shrinks while mapped (another program truncates it), touching
// the lost pages raises SIGBUS; for an address inside a live MappedFile the
// process then prints "error: PATH changed while it was mapped ..." and
// exits with status 1 instead of dying by the signal (mapped_file.cc).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace qlm {

class MappedFile {
 public:
  MappedFile() = default;
  // Throws qlm::Error naming the path if it cannot be opened or mapped.
  static MappedFile Open(const std::string& path);
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  MappedFile(MappedFile&& o) noexcept;
  MappedFile& operator=(MappedFile&& o) noexcept;
  ~MappedFile();

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  std::string path_;
};

}  // namespace qlm
