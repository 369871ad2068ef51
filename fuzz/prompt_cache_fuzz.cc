// Fuzzes the prompt-cache reader (LoadPromptCache, core/prompt_cache.h). The
// input's first byte picks the KV type; the rest is a whole cache file for a
// tiny two-layer model (one sliding layer of 4 slots, one full layer of 8).
// So that mutations get past the header to the slot tables and rows, the
// target first writes the header fields a session checks (magic, version,
// model id, kv type, shape, context) and makes the token ids a prefix of the
// prompt; the mismatch paths themselves are covered by the unit tests
// (tests/core/prompt_cache_test.cc).
//
// The reader must reject a bad file by returning 0 with a reason and an
// empty cache, never by crashing; an accepted file must leave every layer
// with at most `capacity` slots, positions that map to their slots, and
// finite row scales.
#include <unistd.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "base/error.h"
#include "core/kv_cache.h"
#include "core/prompt_cache.h"
#include "fuzz/fuzz_util.h"

namespace {

constexpr uint64_t kModelId = 0x51A4C0DEull;
constexpr size_t kContext = 8;

qlm::ModelConfig TinyConfig() {
  qlm::ModelConfig c;
  c.model_type = "gemma2";
  c.vocab_size = 16;
  c.hidden_size = 16;
  c.num_layers = 2;
  c.num_heads = 2;
  c.num_kv_heads = 2;
  c.head_dim = 4;
  c.sliding_window = 4;
  c.layer_is_sliding = {true, false};
  return c;
}

template <class T>
void Store(std::vector<uint8_t>& b, size_t at, T v) {
  if (at + sizeof(T) <= b.size()) std::memcpy(b.data() + at, &v, sizeof(T));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  static const qlm::ModelConfig config = TinyConfig();
  static const std::string path = "/tmp/qlm_fuzz_prompt_cache_" + std::to_string(getpid()) + ".bin";
  const auto type = static_cast<qlm::KvType>(data[0] % qlm::kernels::kNumKvTypes);
  std::vector<uint8_t> file(data + 1, data + size);
  // Header (core/prompt_cache.h): magic 8, u32 version, u64 model id, u32
  // kv type, u32 layers, u32 kv heads, u32 head_dim, u64 context, u64 n.
  if (file.size() >= 8) std::memcpy(file.data(), "QLMKVC\0\0", 8);
  Store<uint32_t>(file, 8, qlm::kPromptCacheVersion);
  Store<uint64_t>(file, 12, kModelId);
  Store<uint32_t>(file, 20, static_cast<uint32_t>(type));
  Store<uint32_t>(file, 24, 2);
  Store<uint32_t>(file, 28, 2);
  Store<uint32_t>(file, 32, 4);
  Store<uint64_t>(file, 36, kContext);
  uint64_t n = 0;
  if (file.size() >= 52) std::memcpy(&n, file.data() + 44, 8);
  for (uint64_t i = 0; i < n && i < kContext; ++i) Store<int32_t>(file, 52 + 4 * i, int32_t(i));

  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return 0;
  const bool written = std::fwrite(file.data(), 1, file.size(), f) == file.size();
  std::fclose(f);
  if (!written) return 0;

  qlm::KvCache kv(config, kContext, type);
  std::vector<int32_t> prompt(kContext);
  for (size_t i = 0; i < kContext; ++i) prompt[i] = static_cast<int32_t>(i);
  std::vector<int32_t> tokens;
  std::string why;
  size_t got = 0;
  try {
    got = qlm::LoadPromptCache(path, kModelId, kv, prompt, &tokens, &why);
  } catch (const qlm::Error&) {
    return 0;
  }
  if (got == 0) {
    FUZZ_CHECK(!why.empty());
    for (size_t l = 0; l < kv.num_layers(); ++l) FUZZ_CHECK(kv.layer(l).used == 0);
    return 0;
  }
  FUZZ_CHECK(got == tokens.size() && got <= prompt.size());
  for (size_t l = 0; l < kv.num_layers(); ++l) {
    const qlm::LayerKv& L = kv.layer(l);
    FUZZ_CHECK(L.used <= L.capacity);
    for (size_t s = 0; s < L.used; ++s) {
      const int32_t pos = L.slot_pos[s];
      FUZZ_CHECK(pos >= -1 && pos < static_cast<int32_t>(got));
      FUZZ_CHECK(pos < 0 || L.SlotOf(pos) == s);
      if (L.k_scale != nullptr) {
        for (size_t h = 0; h < kv.kv_heads(); ++h) {
          FUZZ_CHECK(std::isfinite(L.k_scale[h * L.capacity + s]));
          FUZZ_CHECK(std::isfinite(L.v_scale[h * L.capacity + s]));
        }
      }
    }
  }
  return 0;
}
