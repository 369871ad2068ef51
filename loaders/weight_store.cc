#include "loaders/weight_store.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <utility>

#include "base/error.h"
#include "loaders/safetensors.h"

namespace qlm {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kSingleFile = "model.safetensors";
constexpr const char* kIndexFile = "model.safetensors.index.json";

std::string ReadTextFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot open " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw Error("cannot read " + path);
  return ss.str();
}

bool IsRegularFile(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

// Shard names come from a file we do not trust: they must name a file in the
// model directory itself, never a path elsewhere.
bool IsPlainFileName(const std::string& name) {
  return !name.empty() && name != "." && name != ".." &&
         name.find_first_of("/\\") == std::string::npos && name.find('\0') == std::string::npos;
}

}  // namespace

const char* DTypeName(DType d) {
  switch (d) {
    case DType::kF32:
      return "F32";
    case DType::kBF16:
      return "BF16";
    case DType::kF16:
      return "F16";
    case DType::kI32:
      return "I32";
  }
  return "?";
}

size_t DTypeSize(DType d) {
  switch (d) {
    case DType::kF32:
    case DType::kI32:
      return 4;
    case DType::kBF16:
    case DType::kF16:
      return 2;
  }
  return 0;
}

int64_t StoredTensor::numel() const {
  // With a zero dimension the parser bounds nothing else (the tensor has no
  // bytes), so the other dimensions' product may not fit: the answer is 0.
  for (int64_t d : shape) {
    if (d == 0) return 0;
  }
  int64_t n = 1;
  for (int64_t d : shape) n *= d;  // fits: numel * dtype size == bytes, checked at open
  return n;
}

void WeightStore::AddFile(MappedFile file) {
  const SafetensorsHeader header = ParseSafetensors(file.data(), file.size(), file.path());
  const uint8_t* base = file.data() + header.data_offset;
  for (const SafetensorsEntry& e : header.tensors) {
    const auto seen = tensor_files_.find(e.name);
    if (seen != tensor_files_.end()) {
      throw Error("tensor '" + e.name + "' appears in both " + seen->second + " and " +
                  file.path());
    }
    StoredTensor t;
    t.name = e.name;
    t.dtype = e.dtype;
    t.shape = e.shape;
    t.data = base + e.begin;
    t.bytes = e.end - e.begin;
    tensor_files_.emplace(e.name, file.path());
    tensors_.emplace(e.name, std::move(t));
  }
  files_.push_back(std::move(file));
}

WeightStore WeightStore::OpenSafetensors(const std::string& path, const FileReadOptions& files) {
  WeightStore ws;
  ws.source_ = path;
  ws.AddFile(MappedFile::Open(path, files));
  return ws;
}

WeightStore WeightStore::OpenHfDir(const std::string& dir, const FileReadOptions& files) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw Error("model directory " + dir + " does not exist");
  const fs::path root(dir);

  // Like transformers: a single model.safetensors wins over an index.
  if (IsRegularFile(root / kSingleFile)) {
    WeightStore ws = OpenSafetensors((root / kSingleFile).string(), files);
    ws.source_ = dir;
    return ws;
  }
  const std::string index_path = (root / kIndexFile).string();
  if (!IsRegularFile(index_path)) {
    throw Error("no " + std::string(kSingleFile) + " or " + kIndexFile + " in " + dir);
  }

  json index;
  try {
    index = json::parse(ReadTextFile(index_path));
  } catch (const json::exception& e) {
    throw Error(index_path + " is not valid JSON: " + e.what());
  }
  if (!index.is_object()) throw Error(index_path + " must be a JSON object");
  const auto map = index.find("weight_map");
  if (map == index.end()) throw Error(index_path + " has no \"weight_map\"");
  if (!map->is_object()) throw Error(index_path + ": \"weight_map\" must be an object");

  // Shards in the order of their names, each opened once.
  std::set<std::string> shards;
  for (const auto& [tensor, shard] : map->items()) {
    if (!shard.is_string()) {
      throw Error(index_path + ": shard for tensor '" + tensor + "' must be a file name string");
    }
    const std::string name = shard.get<std::string>();
    if (!IsPlainFileName(name)) {
      throw Error(index_path + ": shard '" + name + "' for tensor '" + tensor +
                  "' is not a plain file name in the model directory");
    }
    shards.insert(name);
  }
  if (shards.empty()) throw Error(index_path + ": \"weight_map\" lists no tensors");

  WeightStore ws;
  ws.source_ = dir;
  for (const std::string& shard : shards) {
    const std::string path = (root / shard).string();
    if (!IsRegularFile(path)) {
      throw Error("shard " + path + " listed in " + index_path + " does not exist");
    }
    ws.AddFile(MappedFile::Open(path, files));
  }
  for (const auto& [tensor, shard] : map->items()) {
    const auto where = ws.tensor_files_.find(tensor);
    const std::string expected = (root / shard.get<std::string>()).string();
    if (where == ws.tensor_files_.end() || where->second != expected) {
      throw Error(index_path + " puts tensor '" + tensor + "' in " + expected +
                  (where == ws.tensor_files_.end() ? ", but no shard has it"
                                                   : ", but it is in " + where->second));
    }
  }
  return ws;
}

const StoredTensor* WeightStore::Find(const std::string& name) const {
  const auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

const StoredTensor& WeightStore::Get(const std::string& name) const {
  const StoredTensor* t = Find(name);
  if (t == nullptr) throw Error("missing tensor " + name + " in " + source_);
  return *t;
}

const std::string& WeightStore::FileOf(const std::string& name) const {
  static const std::string kNone;
  const auto it = tensor_files_.find(name);
  return it == tensor_files_.end() ? kNone : it->second;
}

size_t WeightStore::mapped_bytes() const {
  size_t n = 0;
  for (const MappedFile& f : files_) n += f.size();
  return n;
}

size_t WeightStore::read_bytes() const {
  size_t n = 0;
  for (const MappedFile& f : files_) n += f.read_bytes();
  return n;
}

}  // namespace qlm
