// Fuzzes the .qlm reader (ParseQlmFile, loaders/qlm_file.h). The input is a
// whole .qlm file. So that mutations get past the checksums to the metadata
// and tensor directory, the target first repairs what a random mutation
// almost always breaks: file_bytes (set to the input size), the metadata
// checksum (when the metadata range lies inside the file) and the header
// checksum. The checksum-mismatch paths themselves are covered by the
// malformed-file corpus (tests/data/bad/qlm).
//
// An accepted file must give views that lie inside the buffer, permutations
// that are permutations, and rows that the reference decoders can read.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <vector>

#include "base/error.h"
#include "fuzz/fuzz_util.h"
#include "loaders/qlm_file.h"
#include "loaders/xxh64.h"
#include "quant/quantize.h"

namespace {

using qlm::fuzz::Inside;
using qlm::fuzz::Touch;

uint64_t LoadU64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
void StoreU64(uint8_t* p, uint64_t v) { std::memcpy(p, &v, 8); }

constexpr std::align_val_t kAlign{64};
struct AlignedDelete {
  void operator()(uint8_t* p) const { ::operator delete[](p, kAlign); }
};

// Header field offsets (docs/formats.md, "The .qlm file").
constexpr size_t kOffFileBytes = 24, kOffMetaOffset = 48, kOffMetaBytes = 56, kOffMetaChecksum = 64,
                 kOffHeaderChecksum = 120;

void RepairChecksums(uint8_t* p, size_t size) {
  if (size < qlm::kQlmHeaderBytes) return;
  StoreU64(p + kOffFileBytes, size);
  const uint64_t meta_off = LoadU64(p + kOffMetaOffset), meta_bytes = LoadU64(p + kOffMetaBytes);
  if (meta_off <= size && meta_bytes <= size - meta_off) {
    StoreU64(p + kOffMetaChecksum, qlm::Xxh64(p + meta_off, meta_bytes));
  }
  StoreU64(p + kOffHeaderChecksum, qlm::Xxh64(p, kOffHeaderChecksum));
}

void CheckTensor(const qlm::QlmTensorEntry& t, const uint8_t* buf, size_t size) {
  const qlm::TensorDesc& d = t.view.desc;
  FUZZ_CHECK(t.bytes == d.total_bytes);
  FUZZ_CHECK(t.offset % qlm::kAlignment == 0);
  FUZZ_CHECK(Inside(buf + t.offset, t.bytes, buf, size));
  FUZZ_CHECK(Inside(t.view.data, d.data_bytes, buf, size));
  Touch(t.view.data, d.data_bytes);
  if (d.scales_bytes) FUZZ_CHECK(Inside(t.view.scales, d.scales_bytes, buf, size));
  if (d.zeros_bytes) FUZZ_CHECK(Inside(t.view.zeros, d.zeros_bytes, buf, size));
  if (d.perm_bytes) {
    FUZZ_CHECK(Inside(t.view.perm, d.perm_bytes, buf, size));
    FUZZ_CHECK(d.perm_bytes == d.cols * 4);
    std::vector<bool> seen(d.cols);
    for (uint64_t j = 0; j < d.cols; ++j) {
      int32_t p;
      std::memcpy(&p, reinterpret_cast<const uint8_t*>(t.view.perm) + 4 * j, 4);
      FUZZ_CHECK(p >= 0 && static_cast<uint64_t>(p) < d.cols && !seen[p]);
      seen[p] = true;
    }
  }
  // The reference decoders on the first and last row (what a kernel reads),
  // bounded so that one input cannot take seconds.
  if (d.cols <= (1u << 16)) {
    std::vector<float> row(d.cols);
    qlm::DequantizeRow(t.view, 0, row.data());
    qlm::DequantizeRow(t.view, d.rows - 1, row.data());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // A private, exactly-sized copy (ASan sees any read past its end), 64-byte
  // aligned like a mapping, that the checksum repair may write to.
  std::unique_ptr<uint8_t[], AlignedDelete> owned(new (kAlign) uint8_t[size > 0 ? size : 1]);
  uint8_t* buf = owned.get();
  if (size > 0) std::memcpy(buf, data, size);
  RepairChecksums(buf, size);
  qlm::QlmContents c;
  try {
    c = qlm::ParseQlmFile(buf, size, "fuzz.qlm");
  } catch (const qlm::Error&) {
    return 0;
  }
  FUZZ_CHECK(c.version == qlm::kQlmVersion);
  if (!c.tokenizer_proto.empty()) {
    FUZZ_CHECK(Inside(c.tokenizer_proto.data(), c.tokenizer_proto.size(), buf, size));
  }
  FUZZ_CHECK(c.index.size() == c.tensors.size());
  for (const qlm::QlmTensorEntry& t : c.tensors) {
    FUZZ_CHECK(c.Find(t.name) == &t);
    CheckTensor(t, buf, size);
  }
  try {
    qlm::VerifyQlmChecksums(c, "fuzz.qlm");
  } catch (const qlm::Error&) {
  }
  return 0;
}
