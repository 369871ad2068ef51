// MappedFile in both residencies: a mapping of the file (kMapped, --mmap)
// and a copy read into 2 MiB-aligned anonymous memory (kRead) hold the same
// bytes; moves carry the bytes; errors name the path; a read copy that would
// not fit in the available memory becomes a mapping.
#include "loaders/mapped_file.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <utility>

#include "base/error.h"

namespace qlm {
namespace {

namespace fs = std::filesystem;

std::string TempPath(const std::string& name) {
  return (fs::temp_directory_path() /
          ("qlm_mapped_file_test_" + std::to_string(::getpid()) + "_" + name))
      .string();
}

// A file of `size` bytes whose byte i is a hash of i (no two pages alike).
std::string WritePatternFile(const std::string& name, size_t size) {
  std::string bytes(size, '\0');
  for (size_t i = 0; i < size; ++i) bytes[i] = static_cast<char>((i * 2654435761u) >> 13);
  const std::string path = TempPath(name);
  std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(size));
  return path;
}

TEST(MappedFile, ReadCopyHoldsTheSameBytesAsTheMapping) {
  // Odd sizes: under one page, one byte past a 2 MiB page, several MiB.
  for (const size_t size :
       {size_t{1}, size_t{4097}, (size_t{2} << 20) + 1, (size_t{5} << 20) + 17}) {
    const std::string path = WritePatternFile("pattern_" + std::to_string(size), size);
    const MappedFile mapped = MappedFile::Open(path);
    const MappedFile read = MappedFile::Open(path, FileResidency::kRead);
    EXPECT_EQ(mapped.residency(), FileResidency::kMapped);
    EXPECT_EQ(read.residency(), FileResidency::kRead);
    ASSERT_EQ(mapped.size(), size);
    ASSERT_EQ(read.size(), size);
    EXPECT_EQ(read.path(), path);
    EXPECT_NE(read.data(), mapped.data());
    EXPECT_EQ(reinterpret_cast<uintptr_t>(read.data()) % (size_t{2} << 20), 0u)
        << "the copy starts on a 2 MiB boundary so huge pages can back all of it";
    EXPECT_EQ(std::memcmp(read.data(), mapped.data(), size), 0) << size;
    fs::remove(path);
  }
}

// Read by several threads: 64 MiB chunks, so a file of 2 chunks and a
// partial third, read by 1, 2, 3 and 8 threads (more than chunks); the
// progress reports rise on the calling thread and end at the file's size.
TEST(MappedFile, ReadByThreadsHoldsTheSameBytes) {
  const size_t size = (size_t{128} << 20) + 4099;
  const std::string path = WritePatternFile("threads", size);
  const MappedFile mapped = MappedFile::Open(path);
  const std::thread::id caller = std::this_thread::get_id();
  for (const size_t threads : {size_t{1}, size_t{2}, size_t{3}, size_t{8}}) {
    size_t last = 0, calls = 0;
    FileReadOptions o;
    o.residency = FileResidency::kRead;
    o.threads = threads;
    o.progress = [&](size_t done, size_t total, const std::string& p) {
      EXPECT_EQ(std::this_thread::get_id(), caller);
      EXPECT_GT(done, last);
      EXPECT_EQ(total, size);
      EXPECT_EQ(p, path);
      last = done;
      ++calls;
    };
    const MappedFile read = MappedFile::Open(path, o);
    EXPECT_EQ(read.residency(), FileResidency::kRead);
    ASSERT_EQ(read.size(), size);
    EXPECT_EQ(std::memcmp(read.data(), mapped.data(), size), 0) << threads << " threads";
    EXPECT_EQ(last, size) << threads << " threads";
    EXPECT_GE(calls, 1u);
  }
  fs::remove(path);
}

// A progress callback that throws (a caller cancelling the load) ends the
// read: the helper threads are joined and the exception reaches the caller.
TEST(MappedFile, ThrowingProgressCancelsAThreadedRead) {
  const size_t size = (size_t{128} << 20) + 1;
  const std::string path = WritePatternFile("cancel", size);
  FileReadOptions o;
  o.residency = FileResidency::kRead;
  o.threads = 2;
  o.progress = [](size_t, size_t, const std::string&) { throw Error("cancelled"); };
  try {
    MappedFile::Open(path, o);
    ADD_FAILURE() << "the read was not cancelled";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "cancelled");
  }
  fs::remove(path);
}

TEST(MappedFile, MovesCarryTheBytesAndTheResidency) {
  const size_t size = (size_t{3} << 20) + 5;
  const std::string path = WritePatternFile("move", size);
  const MappedFile reference = MappedFile::Open(path);
  MappedFile a = MappedFile::Open(path, FileResidency::kRead);
  const uint8_t* data = a.data();
  MappedFile b(std::move(a));
  EXPECT_EQ(a.data(), nullptr);
  EXPECT_EQ(a.size(), 0u);
  EXPECT_EQ(b.data(), data);
  EXPECT_EQ(b.residency(), FileResidency::kRead);
  // Assigning over a live read copy releases it and takes the mapping.
  b = MappedFile::Open(path);
  EXPECT_EQ(b.residency(), FileResidency::kMapped);
  ASSERT_EQ(b.size(), size);
  EXPECT_EQ(std::memcmp(b.data(), reference.data(), size), 0);
  b = MappedFile::Open(path, FileResidency::kRead);
  EXPECT_EQ(std::memcmp(b.data(), reference.data(), size), 0);
  fs::remove(path);
}

TEST(MappedFile, EmptyFileHasNoBytesInEitherResidency) {
  const std::string path = TempPath("empty");
  std::ofstream(path, std::ios::binary).close();
  for (const FileResidency r : {FileResidency::kMapped, FileResidency::kRead}) {
    const MappedFile f = MappedFile::Open(path, r);
    EXPECT_EQ(f.size(), 0u);
    EXPECT_EQ(f.data(), nullptr);
  }
  fs::remove(path);
}

TEST(MappedFile, ErrorsNameThePath) {
  const std::string missing = TempPath("missing");
  const std::string dir = TempPath("dir");
  fs::create_directories(dir);
  for (const FileResidency r : {FileResidency::kMapped, FileResidency::kRead}) {
    try {
      MappedFile::Open(missing, r);
      FAIL() << "a missing file opened";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("cannot open " + missing), std::string::npos)
          << e.what();
    }
    try {
      MappedFile::Open(dir, r);
      FAIL() << "a directory opened";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(dir + " is not a regular file"), std::string::npos)
          << e.what();
    }
  }
  fs::remove_all(dir);
}

TEST(MappedFile, ReadCopyFitsLeavesHeadroom) {
  constexpr size_t kMiB = size_t{1} << 20, kGiB = size_t{1} << 30;
  EXPECT_TRUE(ReadCopyFits(0, 512 * kMiB));
  EXPECT_FALSE(ReadCopyFits(1, 512 * kMiB));                   // the 512 MiB reserve
  EXPECT_FALSE(ReadCopyFits(0, 100 * kMiB));                   // less than the reserve
  EXPECT_TRUE(ReadCopyFits(8 * kGiB, 9 * kGiB + 512 * kMiB));  // + 1/8 + reserve
  EXPECT_FALSE(ReadCopyFits(8 * kGiB, 9 * kGiB + 511 * kMiB));
  EXPECT_FALSE(ReadCopyFits(SIZE_MAX - 1, SIZE_MAX));  // no overflow
  EXPECT_TRUE(ReadCopyFits(kGiB, SIZE_MAX));           // unknown: read
}

TEST(MappedFile, AvailableMemoryIsPlausible) {
  const size_t avail = AvailableMemoryBytes();
  ASSERT_GT(avail, size_t{0});
  if (avail == SIZE_MAX) GTEST_SKIP() << "no MemAvailable in /proc/meminfo on this system";
  EXPECT_LT(avail, size_t{1} << 50);  // under a petabyte: bytes, not a misparse
}

// A sparse file larger than the available memory (no disk blocks behind
// it): kRead maps it instead of trying to copy it, and says so.
TEST(MappedFile, ReadOfAFileLargerThanMemoryMapsIt) {
  const size_t avail = AvailableMemoryBytes();
  if (avail == SIZE_MAX) GTEST_SKIP() << "no MemAvailable in /proc/meminfo on this system";
  const size_t size = avail + (size_t{1} << 30) + 12345;
  const std::string path = TempPath("sparse");
  std::ofstream(path, std::ios::binary).close();
  fs::resize_file(path, size);
  {
    const MappedFile f = MappedFile::Open(path, FileResidency::kRead);
    EXPECT_EQ(f.residency(), FileResidency::kMapped);
    ASSERT_EQ(f.size(), size);
    EXPECT_EQ(f.data()[size - 1], 0);  // a hole reads as zeros
  }
  fs::remove(path);
}

}  // namespace
}  // namespace qlm
