// Fuzzes WeightStore::OpenHfDir (loaders/weight_store.h) on real files, so
// that the sharded-index logic and the mmap path (MappedFile) are covered.
// Input layout (see fuzz_util.h's Input):
//   u16 L, L bytes       model.safetensors.index.json; L = 0: no index, and
//                        the first shard is written as model.safetensors
//   u32 M, M bytes       shard "model-00001-of-00002.safetensors"
//   rest                 shard "model-00002-of-00002.safetensors"
// Every tensor handed out must lie inside one of the mapped files.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "base/error.h"
#include "fuzz/fuzz_util.h"
#include "loaders/weight_store.h"

namespace {

namespace fs = std::filesystem;

// A private directory for this process, removed at exit. Never destroyed
// (it outlives every static that might use it); still reachable, so no leak.
const std::string& ScratchDir() {
  static const std::string* const dir = [] {
    std::string tmpl = (fs::temp_directory_path() / "qlm-fuzz-ws-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) std::abort();
    auto* d = new std::string(tmpl);
    std::atexit([] {
      std::error_code ec;
      fs::remove_all(ScratchDir(), ec);
    });
    return d;
  }();
  return *dir;
}

void WriteFile(const std::string& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) std::abort();
}

struct CleanUp {
  ~CleanUp() {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(ScratchDir(), ec)) fs::remove(e.path(), ec);
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  qlm::fuzz::Input in(data, size);
  const std::string_view index = in.Take(in.U16());
  const std::string_view shard1 = in.Take(in.U32());
  const std::string_view shard2 = in.Rest();

  const std::string& dir = ScratchDir();
  CleanUp clean_up;
  if (index.empty()) {
    WriteFile(dir + "/model.safetensors", shard1);
  } else {
    WriteFile(dir + "/model.safetensors.index.json", index);
    WriteFile(dir + "/model-00001-of-00002.safetensors", shard1);
    WriteFile(dir + "/model-00002-of-00002.safetensors", shard2);
  }
  try {
    const qlm::WeightStore ws = qlm::WeightStore::OpenHfDir(dir);
    FUZZ_CHECK(ws.mapped_bytes() <= shard1.size() + shard2.size());
    for (const auto& [name, t] : ws.tensors()) {
      FUZZ_CHECK(name == t.name);
      FUZZ_CHECK(!ws.FileOf(name).empty());
      FUZZ_CHECK(ws.Find(name) == &t);
      FUZZ_CHECK(static_cast<uint64_t>(t.numel()) * qlm::DTypeSize(t.dtype) == t.bytes);
      qlm::fuzz::Touch(t.data, t.bytes);
    }
  } catch (const qlm::Error&) {
  }
  return 0;
}
