#include "loaders/qlm_file.h"

#include <fmt/format.h>
#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "base/error.h"

namespace qlm {
namespace {

using nlohmann::json;

static_assert(std::endian::native == std::endian::little,
              ".qlm files are little-endian; qlm runs on little-endian hosts only");

// Header field offsets (docs/formats.md, "The .qlm file").
constexpr size_t kOffMagic = 0;
constexpr size_t kOffVersion = 8;
constexpr size_t kOffEndian = 12;
constexpr size_t kOffHeaderBytes = 16;
constexpr size_t kOffFlags = 20;
constexpr size_t kOffFileBytes = 24;
constexpr size_t kOffDataOffset = 32;
constexpr size_t kOffDataBytes = 40;
constexpr size_t kOffMetaOffset = 48;
constexpr size_t kOffMetaBytes = 56;
constexpr size_t kOffMetaChecksum = 64;
constexpr size_t kOffReserved = 72;
constexpr size_t kOffHeaderChecksum = 120;

// Dimensions above this are rejected before MakeTensorDesc (same bound).
constexpr uint64_t kMaxDim = uint64_t{1} << 40;

template <class T>
T Load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

template <class T>
void Store(uint8_t* p, T v) {
  std::memcpy(p, &v, sizeof(T));
}

std::string Hex64(uint64_t v) { return fmt::format("{:016x}", v); }

[[noreturn]] void Fail(const std::string& source, const std::string& what) {
  throw Error(".qlm file " + source + ": " + what);
}

[[noreturn]] void FailTensor(const std::string& source, const std::string& tensor,
                             const std::string& what) {
  Fail(source, "tensor '" + tensor + "': " + what);
}

// Reads metadata fields with type checks; every failure names the field.
class Reader {
 public:
  Reader(const std::string& source, std::string where)
      : source_(source), where_(std::move(where)) {}

  [[noreturn]] void Bad(const std::string& key, const std::string& what) const {
    Fail(source_, where_ + "\"" + key + "\" " + what);
  }

  const json& Get(const json& obj, const std::string& key) const {
    const auto it = obj.find(key);
    if (it == obj.end()) Fail(source_, where_ + "missing \"" + key + "\"");
    return *it;
  }
  uint64_t U64(const json& obj, const std::string& key, uint64_t limit) const {
    const json& v = Get(obj, key);
    if (!v.is_number_unsigned()) Bad(key, "must be a non-negative integer, not " + v.dump());
    const uint64_t x = v.get<uint64_t>();
    if (x > limit) Bad(key, "is too large (" + std::to_string(x) + ")");
    return x;
  }
  std::string String(const json& obj, const std::string& key) const {
    const json& v = Get(obj, key);
    if (!v.is_string()) Bad(key, std::string("must be a string, not ") + v.type_name());
    return v.get<std::string>();
  }
  bool Bool(const json& obj, const std::string& key) const {
    const json& v = Get(obj, key);
    if (!v.is_boolean()) Bad(key, std::string("must be true or false, not ") + v.type_name());
    return v.get<bool>();
  }
  double Number(const json& obj, const std::string& key) const {
    const json& v = Get(obj, key);
    if (!v.is_number()) Bad(key, std::string("must be a number, not ") + v.type_name());
    return v.get<double>();
  }
  uint64_t Checksum(const json& obj, const std::string& key) const {
    const std::string s = String(obj, key);
    if (s.size() != 16) Bad(key, "must be 16 hex digits");
    uint64_t v = 0;
    for (const char c : s) {
      int d;
      if (c >= '0' && c <= '9') {
        d = c - '0';
      } else if (c >= 'a' && c <= 'f') {
        d = c - 'a' + 10;
      } else {
        Bad(key, "must be 16 lowercase hex digits");
      }
      v = v << 4 | static_cast<uint64_t>(d);
    }
    return v;
  }

 private:
  const std::string& source_;
  std::string where_;
};

// [offset, offset + bytes) must lie inside [lo, hi); checked without overflow.
bool InRange(uint64_t offset, uint64_t bytes, uint64_t lo, uint64_t hi) {
  return offset >= lo && offset <= hi && bytes <= hi - offset;
}

// Throws unless perm[0..cols) is a permutation of 0..cols-1. `seen` is a
// scratch buffer reused across tensors (grown, never shrunk).
void CheckPermutation(const uint8_t* perm_bytes, uint64_t cols, std::vector<uint8_t>& seen,
                      const std::string& source, const std::string& tensor) {
  seen.assign(cols, 0);
  for (uint64_t j = 0; j < cols; ++j) {
    const auto p = Load<int32_t>(perm_bytes + 4 * j);
    if (p < 0 || static_cast<uint64_t>(p) >= cols) {
      FailTensor(source, tensor,
                 "permutation entry " + std::to_string(j) + " = " + std::to_string(p) +
                     " is outside 0.." + std::to_string(cols - 1));
    }
    if (seen[static_cast<uint64_t>(p)]) {
      FailTensor(source, tensor,
                 "permutation holds " + std::to_string(p) + " twice (again at entry " +
                     std::to_string(j) + ")");
    }
    seen[static_cast<uint64_t>(p)] = 1;
  }
}

QlmTensorEntry ParseTensor(const json& e, size_t i, const uint8_t* data, uint64_t data_lo,
                           uint64_t data_hi, std::vector<uint8_t>& scratch,
                           const std::string& source) {
  if (!e.is_object()) Fail(source, "tensors[" + std::to_string(i) + "] must be a JSON object");
  QlmTensorEntry t;
  t.name = Reader(source, "tensors[" + std::to_string(i) + "]: ").String(e, "name");
  if (t.name.empty()) Fail(source, "tensors[" + std::to_string(i) + "] has an empty name");
  const Reader r(source, "tensor '" + t.name + "': ");

  const std::string format_name = r.String(e, "format");
  const std::optional<Format> format = ParseFormat(format_name);
  if (!format) r.Bad("format", "\"" + format_name + "\" is not f32, bf16, int8, q4 or sfp8");

  const json& shape = r.Get(e, "shape");
  if (!shape.is_array() || shape.empty() || shape.size() > 2) {
    r.Bad("shape", "must be an array of 1 or 2 positive integers");
  }
  for (const json& d : shape) {
    if (!d.is_number_unsigned() || d.get<uint64_t>() == 0 || d.get<uint64_t>() > kMaxDim) {
      r.Bad("shape", "must be an array of 1 or 2 positive integers (each at most 2^40), not " +
                         shape.dump());
    }
    t.shape.push_back(static_cast<int64_t>(d.get<uint64_t>()));
  }
  const uint64_t rows = t.shape.size() == 2 ? static_cast<uint64_t>(t.shape[0]) : 1;
  const uint64_t cols = static_cast<uint64_t>(t.shape.back());
  const uint64_t group = r.U64(e, "group_size", 1u << 20);
  const bool has_perm = r.Bool(e, "has_perm");
  TensorDesc desc;
  try {
    desc = MakeTensorDesc(*format, rows, cols,
                          *format == Format::kQ4 ? static_cast<uint32_t>(group) : 0, has_perm);
  } catch (const Error& err) {
    FailTensor(source, t.name, err.what());
  }
  // Every section inside the blob (MakeTensorDesc's sums are not checked
  // for overflow near 2^64; a hostile shape must not wrap them).
  const uint64_t sections[][2] = {{desc.data_offset, desc.data_bytes},
                                  {desc.scales_offset, desc.scales_bytes},
                                  {desc.zeros_offset, desc.zeros_bytes},
                                  {desc.perm_offset, desc.perm_bytes}};
  for (const auto& s : sections) {
    if (!InRange(s[0], s[1], 0, desc.total_bytes)) {
      FailTensor(source, t.name, "shape " + shape.dump() + " is too large");
    }
  }
  if (desc.group_size != group) {
    r.Bad("group_size", "is " + std::to_string(group) + ", but a " + format_name +
                            " tensor has group size " + std::to_string(desc.group_size));
  }
  const double scale = r.Number(e, "tensor_scale");
  const auto fscale = static_cast<float>(scale);
  if (!(fscale > 0.0f) || !std::isfinite(fscale) || static_cast<double>(fscale) != scale) {
    r.Bad("tensor_scale",
          "must be a positive finite float, not " + r.Get(e, "tensor_scale").dump());
  }
  desc.tensor_scale = fscale;

  t.offset = r.U64(e, "offset", std::numeric_limits<uint64_t>::max());
  t.bytes = r.U64(e, "bytes", std::numeric_limits<uint64_t>::max());
  t.checksum = r.Checksum(e, "xxh64");
  if (t.bytes != desc.total_bytes) {
    FailTensor(source, t.name,
               std::to_string(t.bytes) + " bytes, but a " + format_name + " tensor of shape " +
                   shape.dump() + " takes " + std::to_string(desc.total_bytes));
  }
  if (t.offset % kAlignment != 0) {
    FailTensor(source, t.name, "offset " + std::to_string(t.offset) + " is not 64-byte aligned");
  }
  if (!InRange(t.offset, t.bytes, data_lo, data_hi)) {
    FailTensor(source, t.name,
               "bytes [" + std::to_string(t.offset) + ", +" + std::to_string(t.bytes) +
                   ") are outside the data section [" + std::to_string(data_lo) + ", " +
                   std::to_string(data_hi) + ")");
  }
  t.view = ViewTensor(desc, data + t.offset);
  if (desc.has_perm) {
    CheckPermutation(data + t.offset + desc.perm_offset, cols, scratch, source, t.name);
  }
  return t;
}

void VerifyChecksum(const uint8_t* p, uint64_t bytes, uint64_t want, const std::string& source,
                    const std::string& what) {
  const uint64_t got = Xxh64(p, bytes);
  if (got != want) {
    Fail(source, what + " checksum mismatch (stored " + Hex64(want) + ", computed " + Hex64(got) +
                     "): the file is corrupt");
  }
}

}  // namespace

const QlmTensorEntry* QlmContents::Find(const std::string& name) const {
  const auto it = index.find(name);
  return it == index.end() ? nullptr : &tensors[it->second];
}

QlmContents ParseQlmFile(const uint8_t* data, size_t size, const std::string& source,
                         const QlmReadOptions& options) {
  if (size < kQlmHeaderBytes || data == nullptr) {
    Fail(source, "too small to be a .qlm file (" + std::to_string(size) + " bytes)");
  }
  if (std::memcmp(data + kOffMagic, kQlmMagic, sizeof(kQlmMagic)) != 0) {
    Fail(source, "not a .qlm file (bad magic)");
  }
  QlmContents c;
  c.version = Load<uint32_t>(data + kOffVersion);
  if (c.version > kQlmVersion) {
    Fail(source, "format version " + std::to_string(c.version) +
                     " is newer than this qlm supports (" + std::to_string(kQlmVersion) +
                     "); upgrade qlm");
  }
  if (c.version != kQlmVersion) Fail(source, "invalid format version " + std::to_string(c.version));
  const auto endian = Load<uint32_t>(data + kOffEndian);
  if (endian == __builtin_bswap32(kQlmEndianCheck)) {
    Fail(source, "written with big-endian byte order; qlm reads little-endian files only");
  }
  if (endian != kQlmEndianCheck) Fail(source, "corrupt header (bad endianness check value)");
  const auto header_sum = Load<uint64_t>(data + kOffHeaderChecksum);
  if (Xxh64(data, kOffHeaderChecksum) != header_sum) {
    Fail(source, "header checksum mismatch: the file is corrupt");
  }
  if (Load<uint32_t>(data + kOffHeaderBytes) != kQlmHeaderBytes) {
    Fail(source,
         "unexpected header size " + std::to_string(Load<uint32_t>(data + kOffHeaderBytes)));
  }
  if (Load<uint32_t>(data + kOffFlags) != 0) {
    Fail(source, "unknown header flags " + std::to_string(Load<uint32_t>(data + kOffFlags)));
  }
  for (size_t i = kOffReserved; i < kOffHeaderChecksum; ++i) {
    if (data[i] != 0) Fail(source, "reserved header bytes are not zero");
  }
  const auto file_bytes = Load<uint64_t>(data + kOffFileBytes);
  if (file_bytes != size) {
    Fail(source, "the header says the file has " + std::to_string(file_bytes) +
                     " bytes, but it has " + std::to_string(size) +
                     (size < file_bytes ? " (truncated)" : ""));
  }
  const auto data_off = Load<uint64_t>(data + kOffDataOffset);
  const auto data_bytes = Load<uint64_t>(data + kOffDataBytes);
  const auto meta_off = Load<uint64_t>(data + kOffMetaOffset);
  const auto meta_bytes = Load<uint64_t>(data + kOffMetaBytes);
  if (data_off < kQlmHeaderBytes || data_off % kAlignment != 0 ||
      !InRange(data_off, data_bytes, kQlmHeaderBytes, size)) {
    Fail(source, "data section [" + std::to_string(data_off) + ", +" + std::to_string(data_bytes) +
                     ") is misplaced in a file of " + std::to_string(size) + " bytes");
  }
  if (!InRange(meta_off, meta_bytes, data_off + data_bytes, size)) {
    Fail(source, "metadata [" + std::to_string(meta_off) + ", +" + std::to_string(meta_bytes) +
                     ") is misplaced in a file of " + std::to_string(size) + " bytes");
  }
  if (meta_bytes > kQlmMaxMetadataBytes) {
    Fail(source, "metadata block of " + std::to_string(meta_bytes) + " bytes is too large");
  }
  VerifyChecksum(data + meta_off, meta_bytes, Load<uint64_t>(data + kOffMetaChecksum), source,
                 "metadata");

  const json meta = json::parse(data + meta_off, data + meta_off + meta_bytes, nullptr,
                                /*allow_exceptions=*/false);
  if (meta.is_discarded()) Fail(source, "metadata is not valid JSON");
  if (!meta.is_object()) Fail(source, "metadata must be a JSON object");
  const Reader r(source, "metadata: ");
  c.metadata.config_json = r.String(meta, "config");
  const json& gen = r.Get(meta, "generation_config");
  if (gen.is_string()) {
    c.metadata.generation_config_json = gen.get<std::string>();
  } else if (!gen.is_null()) {
    r.Bad("generation_config", "must be a string or null");
  }
  const json& recipe = r.Get(meta, "quantization");
  if (!recipe.is_object()) r.Bad("quantization", "must be a JSON object");
  c.metadata.recipe_json = recipe.dump();

  const uint64_t data_hi = data_off + data_bytes;
  const json& tok = r.Get(meta, "tokenizer");
  if (!tok.is_object()) r.Bad("tokenizer", "must be a JSON object");
  const Reader rt(source, "metadata: tokenizer: ");
  c.tokenizer_offset = rt.U64(tok, "offset", std::numeric_limits<uint64_t>::max());
  const uint64_t tok_bytes = rt.U64(tok, "bytes", std::numeric_limits<uint64_t>::max());
  c.tokenizer_checksum = rt.Checksum(tok, "xxh64");
  if (tok_bytes > 0 && !InRange(c.tokenizer_offset, tok_bytes, data_off, data_hi)) {
    Fail(source, "tokenizer bytes [" + std::to_string(c.tokenizer_offset) + ", +" +
                     std::to_string(tok_bytes) + ") are outside the data section");
  }
  if (tok_bytes > 0) {
    c.tokenizer_proto =
        std::string_view(reinterpret_cast<const char*>(data + c.tokenizer_offset), tok_bytes);
  }
  // Always verified: it is small and read whole by the tokenizer anyway.
  VerifyChecksum(tok_bytes > 0 ? data + c.tokenizer_offset : data, tok_bytes, c.tokenizer_checksum,
                 source, "tokenizer");

  const json& tensors = r.Get(meta, "tensors");
  if (!tensors.is_array()) r.Bad("tensors", "must be an array");
  c.tensors.reserve(tensors.size());
  std::vector<uint8_t> scratch;
  for (size_t i = 0; i < tensors.size(); ++i) {
    QlmTensorEntry t = ParseTensor(tensors[i], i, data, data_off, data_hi, scratch, source);
    if (!c.index.emplace(t.name, c.tensors.size()).second) {
      Fail(source, "tensor '" + t.name + "' appears twice");
    }
    c.tensors.push_back(std::move(t));
  }

  // No two sections may overlap (the tokenizer is one of them).
  std::vector<std::pair<uint64_t, uint64_t>> spans;
  spans.reserve(c.tensors.size() + 1);
  for (const QlmTensorEntry& t : c.tensors) spans.emplace_back(t.offset, t.bytes);
  if (tok_bytes > 0) spans.emplace_back(c.tokenizer_offset, tok_bytes);
  std::sort(spans.begin(), spans.end());
  for (size_t i = 1; i < spans.size(); ++i) {
    if (spans[i].first < spans[i - 1].first + spans[i - 1].second) {
      Fail(source, "sections at offsets " + std::to_string(spans[i - 1].first) + " and " +
                       std::to_string(spans[i].first) + " overlap");
    }
  }
  if (options.verify_checksums) VerifyQlmChecksums(c, source);
  return c;
}

void VerifyQlmChecksums(const QlmContents& c, const std::string& source) {
  for (const QlmTensorEntry& t : c.tensors) {
    VerifyChecksum(t.view.data, t.bytes, t.checksum, source, "tensor '" + t.name + "'");
  }
}

QlmFile QlmFile::Open(const std::string& path, const QlmReadOptions& options) {
  QlmFile f;
  f.file_ = MappedFile::Open(path, options.file);
  f.contents_ = ParseQlmFile(f.file_.data(), f.file_.size(), path, options);
  return f;
}

bool LooksLikeQlmFile(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return false;
  std::ifstream in(path, std::ios::binary);
  char magic[sizeof(kQlmMagic)] = {};
  if (!in.read(magic, sizeof(magic))) return false;
  return std::memcmp(magic, kQlmMagic, sizeof(kQlmMagic)) == 0;
}

// ---- Writer ----

QlmFileWriter::QlmFileWriter(const std::string& path, const QlmFileMetadata& metadata,
                             std::string_view tokenizer_proto)
    : path_(path), partial_path_(path + ".partial"), metadata_(metadata) {
  const json recipe = json::parse(metadata.recipe_json, nullptr, /*allow_exceptions=*/false);
  if (!recipe.is_object()) {
    throw Error("writing " + path + ": the quantization recipe must be a JSON object");
  }
  file_ = std::fopen(partial_path_.c_str(), "wb");
  if (file_ == nullptr) {
    throw Error("cannot create " + partial_path_ + ": " + std::strerror(errno));
  }
  PadTo(kQlmHeaderBytes, nullptr);  // the header is written last, by Finish()
  Xxh64Stream hash;
  Write(tokenizer_proto.data(), tokenizer_proto.size(), &hash);
  tokenizer_bytes_ = tokenizer_proto.size();
  tokenizer_checksum_ = hash.Digest();
}

QlmFileWriter::~QlmFileWriter() {
  if (file_ != nullptr) std::fclose(file_);
  if (!finished_) {
    std::error_code ec;
    std::filesystem::remove(partial_path_, ec);
  }
}

void QlmFileWriter::Write(const void* p, size_t n, Xxh64Stream* hash) {
  if (n == 0) return;
  if (std::fwrite(p, 1, n, file_) != n) {
    throw Error("cannot write " + partial_path_ + ": " + std::strerror(errno));
  }
  if (hash != nullptr) hash->Update(p, n);
  offset_ += n;
}

void QlmFileWriter::PadTo(uint64_t offset, Xxh64Stream* hash) {
  static constexpr uint8_t kZeros[4096] = {};
  while (offset_ < offset) {
    Write(kZeros, static_cast<size_t>(std::min<uint64_t>(offset - offset_, sizeof(kZeros))), hash);
  }
}

void QlmFileWriter::AddTensor(const std::string& name, std::span<const int64_t> shape,
                              const QTensor& t) {
  if (file_ == nullptr || finished_) throw Error("writing " + path_ + ": the file is finished");
  const std::string what = "writing " + path_ + ": tensor '" + name + "'";
  if (name.empty()) throw Error("writing " + path_ + ": a tensor has an empty name");
  if (names_.count(name) != 0) throw Error(what + " is added twice");
  const TensorDesc& d = t.desc;
  const bool shape_ok =
      (shape.size() == 1 && d.rows == 1 && shape[0] > 0 &&
       static_cast<uint64_t>(shape[0]) == d.cols) ||
      (shape.size() == 2 && shape[0] > 0 && shape[1] > 0 &&
       static_cast<uint64_t>(shape[0]) == d.rows && static_cast<uint64_t>(shape[1]) == d.cols);
  if (!shape_ok) throw Error(what + ": shape does not match the descriptor's rows × cols");
  const TensorDesc ref = MakeTensorDesc(d.format, d.rows, d.cols, d.group_size, d.has_perm);
  if (ref.total_bytes != d.total_bytes || ref.data_offset != d.data_offset ||
      ref.scales_offset != d.scales_offset || ref.zeros_offset != d.zeros_offset ||
      ref.perm_offset != d.perm_offset || ref.group_size != d.group_size) {
    throw Error(what + ": descriptor is not the layout MakeTensorDesc gives");
  }
  if (!(d.tensor_scale > 0.0f) || !std::isfinite(d.tensor_scale)) {
    throw Error(what + ": tensor_scale must be positive and finite");
  }
  struct Section {
    uint64_t offset, bytes;
    const void* p;
  };
  const Section sections[] = {{d.data_offset, d.data_bytes, t.data},
                              {d.scales_offset, d.scales_bytes, t.scales},
                              {d.zeros_offset, d.zeros_bytes, t.zeros},
                              {d.perm_offset, d.perm_bytes, t.perm}};
  for (const Section& s : sections) {
    if (s.bytes > 0 && s.p == nullptr) throw Error(what + ": a section's pointer is null");
  }
  PadTo(AlignUp(offset_), nullptr);
  const uint64_t start = offset_;
  Xxh64Stream hash;
  for (const Section& s : sections) {
    if (s.bytes == 0) continue;
    PadTo(start + s.offset, &hash);
    Write(s.p, s.bytes, &hash);
  }
  PadTo(start + d.total_bytes, &hash);
  names_.emplace(name, entries_.size());
  entries_.push_back(
      {name, std::vector<int64_t>(shape.begin(), shape.end()), d, start, hash.Digest()});
}

uint64_t QlmFileWriter::Finish() {
  if (file_ == nullptr || finished_) throw Error("writing " + path_ + ": the file is finished");
  PadTo(AlignUp(offset_), nullptr);
  const uint64_t data_bytes = offset_ - kQlmHeaderBytes;

  json meta = json::object();
  meta["config"] = metadata_.config_json;
  meta["generation_config"] = metadata_.generation_config_json.empty()
                                  ? json(nullptr)
                                  : json(metadata_.generation_config_json);
  meta["quantization"] = json::parse(metadata_.recipe_json);
  meta["tokenizer"] = {{"offset", tokenizer_bytes_ > 0 ? kQlmHeaderBytes : 0},
                       {"bytes", tokenizer_bytes_},
                       {"xxh64", Hex64(tokenizer_checksum_)}};
  json tensors = json::array();
  for (const Entry& e : entries_) {
    tensors.push_back({{"name", e.name},
                       {"format", FormatName(e.desc.format)},
                       {"shape", e.shape},
                       {"group_size", e.desc.group_size},
                       {"has_perm", e.desc.has_perm},
                       {"tensor_scale", static_cast<double>(e.desc.tensor_scale)},
                       {"offset", e.offset},
                       {"bytes", e.desc.total_bytes},
                       {"xxh64", Hex64(e.checksum)}});
  }
  meta["tensors"] = std::move(tensors);
  // Invalid UTF-8 in the config text is replaced rather than failing the write.
  const std::string text = meta.dump(-1, ' ', false, json::error_handler_t::replace);
  const uint64_t meta_off = offset_;
  Write(text.data(), text.size(), nullptr);
  PadTo(AlignUp(offset_, kQlmPageBytes), nullptr);

  uint8_t header[kQlmHeaderBytes] = {};
  std::memcpy(header + kOffMagic, kQlmMagic, sizeof(kQlmMagic));
  Store<uint32_t>(header + kOffVersion, kQlmVersion);
  Store<uint32_t>(header + kOffEndian, kQlmEndianCheck);
  Store<uint32_t>(header + kOffHeaderBytes, static_cast<uint32_t>(kQlmHeaderBytes));
  Store<uint32_t>(header + kOffFlags, 0);
  Store<uint64_t>(header + kOffFileBytes, offset_);
  Store<uint64_t>(header + kOffDataOffset, kQlmHeaderBytes);
  Store<uint64_t>(header + kOffDataBytes, data_bytes);
  Store<uint64_t>(header + kOffMetaOffset, meta_off);
  Store<uint64_t>(header + kOffMetaBytes, text.size());
  Store<uint64_t>(header + kOffMetaChecksum, Xxh64(text.data(), text.size()));
  Store<uint64_t>(header + kOffHeaderChecksum, Xxh64(header, kOffHeaderChecksum));
  if (std::fseek(file_, 0, SEEK_SET) != 0 ||
      std::fwrite(header, 1, sizeof(header), file_) != sizeof(header)) {
    throw Error("cannot write " + partial_path_ + ": " + std::strerror(errno));
  }
  const int closed = std::fclose(file_);
  file_ = nullptr;
  if (closed != 0) throw Error("cannot write " + partial_path_ + ": " + std::strerror(errno));
  std::error_code ec;
  std::filesystem::rename(partial_path_, path_, ec);
  if (ec) throw Error("cannot rename " + partial_path_ + " to " + path_ + ": " + ec.message());
  finished_ = true;
  return offset_;
}

}  // namespace qlm
