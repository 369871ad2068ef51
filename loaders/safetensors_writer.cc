#include "loaders/safetensors_writer.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>

#include "base/error.h"

namespace qlm {

size_t SafetensorsTensorSpec::bytes() const {
  size_t n = DTypeSize(dtype);
  for (int64_t d : shape) {
    if (d < 0) {
      throw Error("safetensors writer: tensor '" + name + "' has a negative dimension " +
                  std::to_string(d));
    }
    if (__builtin_mul_overflow(n, static_cast<size_t>(d), &n)) {
      throw Error("safetensors writer: tensor '" + name + "' is too large (size overflows)");
    }
  }
  return n;
}

std::string EncodeSafetensorsHeader(const std::vector<SafetensorsTensorSpec>& tensors,
                                    const std::map<std::string, std::string>& metadata) {
  // ordered_json keeps declaration order, so the header reads like the file.
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json meta = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) meta[k] = v;
    header["__metadata__"] = std::move(meta);
  }
  std::set<std::string> seen;
  size_t offset = 0;
  for (const SafetensorsTensorSpec& t : tensors) {
    if (t.name.empty()) throw Error("safetensors writer: a tensor has an empty name");
    if (t.name == "__metadata__") {
      throw Error("safetensors writer: \"__metadata__\" is reserved and cannot name a tensor");
    }
    if (!seen.insert(t.name).second) {
      throw Error("safetensors writer: tensor '" + t.name + "' declared twice");
    }
    const size_t end = offset + t.bytes();
    if (end < offset) throw Error("safetensors writer: data section size overflows");
    header[t.name] = {
        {"dtype", DTypeName(t.dtype)}, {"shape", t.shape}, {"data_offsets", {offset, end}}};
    offset = end;
  }
  std::string json = header.dump();
  // The data section must start 8-byte aligned: pad the JSON with spaces.
  json.append((8 - json.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  uint64_t n = json.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);  // little-endian
  out += json;
  return out;
}

SafetensorsWriter::SafetensorsWriter(std::string path)
    : path_(std::move(path)), tmp_path_(path_ + ".tmp") {}

SafetensorsWriter::~SafetensorsWriter() {
  if (!finished_) Abandon();
}

void SafetensorsWriter::Abandon() noexcept {
  if (file_ != nullptr) {
    std::fclose(file_);
    file_ = nullptr;
  }
  if (opened_) {
    std::error_code ec;
    std::filesystem::remove(tmp_path_, ec);
  }
}

void SafetensorsWriter::Declare(const std::string& name, DType dtype, std::vector<int64_t> shape) {
  if (opened_) {
    throw Error("safetensors writer " + path_ + ": tensor '" + name +
                "' declared after data was written; declare every tensor first");
  }
  for (const SafetensorsTensorSpec& t : tensors_) {
    if (t.name == name) {
      throw Error("safetensors writer " + path_ + ": tensor '" + name + "' declared twice");
    }
  }
  SafetensorsTensorSpec spec{name, dtype, std::move(shape)};
  const size_t bytes = spec.bytes();
  if (total_bytes_ + bytes < total_bytes_) {
    throw Error("safetensors writer " + path_ + ": data section size overflows");
  }
  total_bytes_ += bytes;
  tensors_.push_back(std::move(spec));
  ends_.push_back(total_bytes_);
}

void SafetensorsWriter::SetMetadata(const std::string& key, const std::string& value) {
  if (opened_) {
    throw Error("safetensors writer " + path_ + ": metadata set after data was written");
  }
  metadata_[key] = value;
}

void SafetensorsWriter::Open() {
  if (opened_) return;
  if (finished_) throw Error("safetensors writer " + path_ + ": already finished");
  const std::string header = EncodeSafetensorsHeader(tensors_, metadata_);
  file_ = std::fopen(tmp_path_.c_str(), "wb");
  if (file_ == nullptr) {
    throw Error("cannot create " + tmp_path_ + ": " + std::strerror(errno));
  }
  opened_ = true;
  if (std::fwrite(header.data(), 1, header.size(), file_) != header.size()) {
    const int err = errno;
    Abandon();
    throw Error("cannot write " + tmp_path_ + ": " + std::strerror(err));
  }
}

void SafetensorsWriter::Write(const void* data, size_t bytes) {
  Open();
  if (file_ == nullptr) throw Error("safetensors writer " + path_ + ": file is closed");
  if (bytes > total_bytes_ - written_) {
    throw Error("safetensors writer " + path_ + ": writing " + std::to_string(bytes) +
                " bytes at offset " + std::to_string(written_) + " passes the declared " +
                std::to_string(total_bytes_) + "-byte data section");
  }
  if (bytes == 0) return;
  if (std::fwrite(data, 1, bytes, file_) != bytes) {
    const int err = errno;
    Abandon();
    throw Error("cannot write " + tmp_path_ + ": " + std::strerror(err));
  }
  written_ += bytes;
}

void SafetensorsWriter::WriteTensor(const std::string& name, const void* data, size_t bytes) {
  for (size_t i = 0; i < tensors_.size(); ++i) {
    if (tensors_[i].name != name) continue;
    const size_t size = i == 0 ? ends_[0] : ends_[i] - ends_[i - 1];
    const size_t begin = ends_[i] - size;
    if (written_ != begin) {
      throw Error("safetensors writer " + path_ + ": tensor '" + name +
                  "' written out of order (it starts at data offset " + std::to_string(begin) +
                  ", " + std::to_string(written_) + " bytes are written)");
    }
    if (bytes != size) {
      throw Error("safetensors writer " + path_ + ": tensor '" + name + "' is " +
                  std::to_string(size) + " bytes, got " + std::to_string(bytes));
    }
    Write(data, bytes);
    return;
  }
  throw Error("safetensors writer " + path_ + ": tensor '" + name + "' was not declared");
}

void SafetensorsWriter::Finish() {
  Open();
  if (file_ == nullptr) throw Error("safetensors writer " + path_ + ": file is closed");
  if (written_ != total_bytes_) {
    throw Error("safetensors writer " + path_ + ": only " + std::to_string(written_) + " of " +
                std::to_string(total_bytes_) + " data bytes were written");
  }
  std::FILE* f = file_;
  file_ = nullptr;
  if (std::fflush(f) != 0 || std::ferror(f) != 0) {
    const int err = errno;
    std::fclose(f);
    Abandon();
    throw Error("cannot write " + tmp_path_ + ": " + std::strerror(err));
  }
  if (std::fclose(f) != 0) {
    const int err = errno;
    Abandon();
    throw Error("cannot close " + tmp_path_ + ": " + std::strerror(err));
  }
  std::error_code ec;
  std::filesystem::rename(tmp_path_, path_, ec);
  if (ec) {
    Abandon();
    throw Error("cannot rename " + tmp_path_ + " to " + path_ + ": " + ec.message());
  }
  finished_ = true;
}

}  // namespace qlm
