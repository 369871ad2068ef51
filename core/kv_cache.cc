#include "core/kv_cache.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <string>

#include "base/error.h"
#include "quant/half.h"
#include "quant/sfp8.h"

namespace qlm {
namespace {

constexpr float kInt8Max = 127.0f;
constexpr float kSfp8Max = 1.875f;

bool IsSliding(const ModelConfig& c, size_t l) {
  return l < c.layer_is_sliding.size() && c.layer_is_sliding[l] && c.sliding_window > 0;
}

// Slots of layer l at `context`.
size_t CapacityOf(const ModelConfig& c, size_t l, size_t context) {
  const bool ring = IsSliding(c, l) && static_cast<size_t>(c.sliding_window) < context;
  return ring ? static_cast<size_t>(c.sliding_window) : context;
}

// Byte sizes of one layer's regions, each 64-byte aligned, in this order:
// K codes, V codes, K scales, V scales, slot positions.
struct LayerLayout {
  size_t codes = 0, scales = 0, pos = 0;
  size_t total() const { return 2 * codes + 2 * scales + pos; }
};

LayerLayout LayoutOf(size_t kv_heads, size_t head_dim, size_t capacity, KvType t) {
  LayerLayout L;
  L.codes = AlignUp(kv_heads * capacity * head_dim * kernels::KvElemBytes(t));
  L.scales = kernels::KvHasScale(t) ? AlignUp(kv_heads * capacity * sizeof(float)) : 0;
  L.pos = AlignUp(capacity * sizeof(int32_t));
  return L;
}

}  // namespace

KvType ParseKvType(std::string_view name, std::string_view flag) {
  for (int i = 0; i < kernels::kNumKvTypes; ++i) {
    const KvType t = static_cast<KvType>(i);
    if (name == kernels::KvTypeName(t)) return t;
  }
  throw UsageError(std::string(flag) + ": unknown KV cache type '" + std::string(name) +
                   "' (expected f32, bf16, int8 or sfp8)");
}

KvCache::KvCache(const ModelConfig& c, size_t context, KvType type)
    : context_(context),
      kv_heads_(static_cast<size_t>(c.num_kv_heads)),
      head_dim_(static_cast<size_t>(c.head_dim)),
      type_(type) {
  if (context == 0) throw Error("KV cache: context must be at least 1 token");
  if (context > static_cast<size_t>(INT32_MAX)) {
    throw Error("KV cache: context " + std::to_string(context) + " exceeds 2^31 positions");
  }
  const size_t n_layers = static_cast<size_t>(c.num_layers);
  layers_.resize(n_layers);
  std::vector<size_t> offsets(n_layers);
  size_t total = 0;
  for (size_t l = 0; l < n_layers; ++l) {
    LayerKv& L = layers_[l];
    L.window = IsSliding(c, l) ? c.sliding_window : 0;
    L.capacity = CapacityOf(c, l, context);
    L.ring = L.window > 0 && L.capacity < context;
    offsets[l] = total;
    total += LayoutOf(kv_heads_, head_dim_, L.capacity, type_).total();
  }
  reserved_ = total;
  // Address space only: pages are committed when first written.
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  mapped_ = AlignUp(std::max<size_t>(total, 1), page);
  void* p = mmap(nullptr, mapped_, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    mapped_ = 0;
    throw Error("KV cache: cannot reserve " + std::to_string(total) + " bytes for a context of " +
                std::to_string(context) + " tokens: " + std::strerror(errno));
  }
  base_ = static_cast<uint8_t*>(p);
  for (size_t l = 0; l < n_layers; ++l) {
    LayerKv& L = layers_[l];
    const LayerLayout lay = LayoutOf(kv_heads_, head_dim_, L.capacity, type_);
    uint8_t* b = base_ + offsets[l];
    L.k_codes = b;
    L.v_codes = b + lay.codes;
    if (type_ == KvType::kF32) {
      L.k = reinterpret_cast<float*>(L.k_codes);
      L.v = reinterpret_cast<float*>(L.v_codes);
    }
    if (lay.scales > 0) {
      L.k_scale = reinterpret_cast<float*>(b + 2 * lay.codes);
      L.v_scale = reinterpret_cast<float*>(b + 2 * lay.codes + lay.scales);
    }
    L.slot_pos = reinterpret_cast<int32_t*>(b + 2 * lay.codes + 2 * lay.scales);
  }
  Clear();
}

KvCache::KvCache(KvCache&& o) noexcept { *this = std::move(o); }

KvCache& KvCache::operator=(KvCache&& o) noexcept {
  if (this == &o) return *this;
  Release();
  base_ = std::exchange(o.base_, nullptr);
  mapped_ = std::exchange(o.mapped_, 0);
  reserved_ = std::exchange(o.reserved_, 0);
  layers_ = std::move(o.layers_);
  o.layers_.clear();
  context_ = o.context_;
  kv_heads_ = o.kv_heads_;
  head_dim_ = o.head_dim_;
  type_ = o.type_;
  stage_ = std::move(o.stage_);
  return *this;
}

KvCache::~KvCache() { Release(); }

void KvCache::Release() {
  if (base_ != nullptr) munmap(base_, mapped_);
  base_ = nullptr;
  mapped_ = 0;
}

size_t KvCache::slot_bytes() const {
  const size_t scale = kernels::KvHasScale(type_) ? sizeof(float) : 0;
  return 2 * kv_heads_ * (head_dim_ * kernels::KvElemBytes(type_) + scale) + sizeof(int32_t);
}

size_t KvCache::used_bytes() const {
  size_t slots = 0;
  for (const LayerKv& L : layers_) slots += L.used;
  return slots * slot_bytes();
}

size_t KvCache::BytesAt(const ModelConfig& c, size_t context, KvType type) {
  size_t total = 0;
  for (size_t l = 0; l < static_cast<size_t>(c.num_layers); ++l) {
    total += LayoutOf(static_cast<size_t>(c.num_kv_heads), static_cast<size_t>(c.head_dim),
                      CapacityOf(c, l, context), type)
                 .total();
  }
  return total;
}

void KvCache::Clear() {
  // The pages stay committed: nothing reads a slot before Write has set it
  // (full layers read [0, used) only, ring slots are marked empty below), and
  // giving them back made every reuse of a session pay for committing them
  // again: a page fault per 4 KiB, which on the Firecracker VM of session 10
  // cost ~1 ms per Gemma-2-2B decode token. The memory goes back with the
  // cache.
  for (LayerKv& L : layers_) {
    L.used = 0;
    // Rings are small and every slot is scanned: mark them all empty now.
    // Full layers initialise slot positions as they grow (Write).
    if (L.ring) std::fill(L.slot_pos, L.slot_pos + L.capacity, -1);
  }
}

void KvCache::EncodeRow(const float* x, uint8_t* codes, float* scale) const {
  const size_t n = head_dim_;
  switch (type_) {
    case KvType::kF32:
      std::memcpy(codes, x, n * sizeof(float));
      return;
    case KvType::kBF16:
      for (size_t d = 0; d < n; ++d) {
        const uint16_t b = F32ToBF16(x[d]);
        std::memcpy(codes + 2 * d, &b, 2);
      }
      return;
    case KvType::kInt8:
    case KvType::kSFP8: {
      float amax = 0.0f;
      for (size_t d = 0; d < n; ++d) amax = std::max(amax, std::fabs(x[d]));
      if (!(amax > 0.0f) || !std::isfinite(amax)) {
        // All zero (or non-finite: nothing sensible to scale by): zero row.
        std::memset(codes, 0, n);
        *scale = 0.0f;
        return;
      }
      if (type_ == KvType::kInt8) {
        const float s = amax / kInt8Max, inv = kInt8Max / amax;
        for (size_t d = 0; d < n; ++d) {
          const float q = std::nearbyint(x[d] * inv);
          codes[d] = static_cast<uint8_t>(static_cast<int8_t>(std::clamp(q, -kInt8Max, kInt8Max)));
        }
        *scale = s;
      } else {
        const float s = amax / kSfp8Max;
        Sfp8EncodeScaled(x, n, s, codes);
        *scale = s;
      }
      return;
    }
  }
}

void KvCache::DecodeRow(const uint8_t* codes, float scale, float* x) const {
  const size_t n = head_dim_;
  switch (type_) {
    case KvType::kF32:
      std::memcpy(x, codes, n * sizeof(float));
      return;
    case KvType::kBF16:
      for (size_t d = 0; d < n; ++d) {
        uint16_t b;
        std::memcpy(&b, codes + 2 * d, 2);
        x[d] = BF16ToF32(b);
      }
      return;
    case KvType::kInt8:
      for (size_t d = 0; d < n; ++d)
        x[d] = scale * static_cast<float>(static_cast<int8_t>(codes[d]));
      return;
    case KvType::kSFP8:
      for (size_t d = 0; d < n; ++d) x[d] = scale * Sfp8Decode(codes[d]);
      return;
  }
}

namespace {

// Bytes of each region Write commits ahead at once: 64 positions of an f32
// head_dim-256 row. Small against any real context's cache, large enough
// that one system call replaces 16 page faults.
constexpr size_t kCommitBytes = size_t{64} << 10;

// madvise(MADV_POPULATE_WRITE) over [p, p + bytes) widened to whole pages.
void Populate(const void* p, size_t bytes, size_t page) {
#if defined(MADV_POPULATE_WRITE)
  if (p == nullptr || bytes == 0) return;
  const uintptr_t begin = reinterpret_cast<uintptr_t>(p) / page * page;
  const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + bytes + page - 1) / page * page;
  // Best effort: older kernels (EINVAL) or memory pressure leave the pages
  // to be faulted in by the writes, as without this call.
  (void)madvise(reinterpret_cast<void*>(begin), end - begin, MADV_POPULATE_WRITE);
#else
  (void)p, (void)bytes, (void)page;
#endif
}

}  // namespace

void KvCache::Commit(LayerKv& L, size_t upto) {
  const size_t row_bytes = head_dim_ * kernels::KvElemBytes(type_);
  const size_t chunk = std::max<size_t>(1, kCommitBytes / row_bytes);
  const size_t first = L.committed;
  const size_t last = std::min(L.capacity, std::max(upto, first + chunk));
  if (last <= first) return;
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  const size_t slots = last - first;
  for (size_t h = 0; h < kv_heads_; ++h) {
    const size_t row = h * L.capacity + first;
    Populate(L.k_codes + row * row_bytes, slots * row_bytes, page);
    Populate(L.v_codes + row * row_bytes, slots * row_bytes, page);
    if (L.k_scale != nullptr) Populate(L.k_scale + row, slots * sizeof(float), page);
    if (L.v_scale != nullptr) Populate(L.v_scale + row, slots * sizeof(float), page);
  }
  Populate(L.slot_pos + first, slots * sizeof(int32_t), page);
  L.committed = last;
}

void KvCache::Write(size_t l, int32_t pos0, size_t n, const float* k, const float* v) {
  LayerKv& L = layers_[l];
  const size_t kv_dim = kv_heads_ * head_dim_;
  const size_t row_bytes = head_dim_ * kernels::KvElemBytes(type_);
  // A ring only needs the last `capacity` positions of the batch.
  const size_t skip = L.ring && n > L.capacity ? n - L.capacity : 0;
  float dummy_scale = 0.0f;
  for (size_t i = skip; i < n; ++i) {
    const int32_t pos = pos0 + static_cast<int32_t>(i);
    const size_t slot = L.SlotOf(pos);
    if (slot >= L.committed) Commit(L, slot + 1);
    if (!L.ring && slot >= L.used) {
      // Slots skipped over (never written) must read as empty.
      std::fill(L.slot_pos + L.used, L.slot_pos + slot, -1);
    }
    for (size_t h = 0; h < kv_heads_; ++h) {
      const size_t row = h * L.capacity + slot;
      float* ks = L.k_scale != nullptr ? L.k_scale + row : &dummy_scale;
      float* vs = L.v_scale != nullptr ? L.v_scale + row : &dummy_scale;
      EncodeRow(k + i * kv_dim + h * head_dim_, L.k_codes + row * row_bytes, ks);
      EncodeRow(v + i * kv_dim + h * head_dim_, L.v_codes + row * row_bytes, vs);
    }
    L.slot_pos[slot] = pos;
    const size_t in_use = L.ring ? std::min(L.capacity, static_cast<size_t>(pos) + 1) : slot + 1;
    L.used = std::max(L.used, in_use);
  }
}

void KvCache::Bind(size_t l, kernels::AttentionArgs& a) const {
  const LayerKv& L = layers_[l];
  a.kv_type = type_;
  a.k = L.k;
  a.v = L.v;
  a.k_codes = L.k_codes;
  a.v_codes = L.v_codes;
  a.k_scale = L.k_scale;
  a.v_scale = L.v_scale;
  a.slot_pos = L.slot_pos;
  a.capacity = L.capacity;
  a.n_slots = L.used;
}

void KvCache::BindStaged(size_t l, int32_t pos0, size_t n, const float* k, const float* v,
                         kernels::AttentionArgs& a) {
  const LayerKv& L = layers_[l];
  const size_t cap = L.capacity + n, kv_dim = kv_heads_ * head_dim_;
  const size_t row_bytes = head_dim_ * kernels::KvElemBytes(type_);
  const LayerLayout lay = LayoutOf(kv_heads_, head_dim_, cap, type_);
  if (stage_.size() < lay.total()) stage_.Resize(lay.total());
  uint8_t* b = stage_.data();
  uint8_t* k_codes = b;
  uint8_t* v_codes = b + lay.codes;
  float* k_scale = lay.scales > 0 ? reinterpret_cast<float*>(b + 2 * lay.codes) : nullptr;
  float* v_scale =
      lay.scales > 0 ? reinterpret_cast<float*>(b + 2 * lay.codes + lay.scales) : nullptr;
  int32_t* pos = reinterpret_cast<int32_t*>(b + 2 * lay.codes + 2 * lay.scales);
  float dummy_scale = 0.0f;
  for (size_t h = 0; h < kv_heads_; ++h) {
    std::memcpy(k_codes + h * cap * row_bytes, L.k_codes + h * L.capacity * row_bytes,
                L.capacity * row_bytes);
    std::memcpy(v_codes + h * cap * row_bytes, L.v_codes + h * L.capacity * row_bytes,
                L.capacity * row_bytes);
    if (k_scale != nullptr) {
      std::memcpy(k_scale + h * cap, L.k_scale + h * L.capacity, L.capacity * sizeof(float));
      std::memcpy(v_scale + h * cap, L.v_scale + h * L.capacity, L.capacity * sizeof(float));
    }
    for (size_t i = 0; i < n; ++i) {
      const size_t row = h * cap + L.capacity + i;
      EncodeRow(k + i * kv_dim + h * head_dim_, k_codes + row * row_bytes,
                k_scale != nullptr ? k_scale + row : &dummy_scale);
      EncodeRow(v + i * kv_dim + h * head_dim_, v_codes + row * row_bytes,
                v_scale != nullptr ? v_scale + row : &dummy_scale);
    }
  }
  std::memcpy(pos, L.slot_pos, L.capacity * sizeof(int32_t));
  for (size_t i = 0; i < n; ++i) pos[L.capacity + i] = pos0 + static_cast<int32_t>(i);
  a.kv_type = type_;
  a.k = type_ == KvType::kF32 ? reinterpret_cast<const float*>(k_codes) : nullptr;
  a.v = type_ == KvType::kF32 ? reinterpret_cast<const float*>(v_codes) : nullptr;
  a.k_codes = k_codes;
  a.v_codes = v_codes;
  a.k_scale = k_scale;
  a.v_scale = v_scale;
  a.slot_pos = pos;
  a.capacity = cap;
  a.n_slots = cap;
}

}  // namespace qlm
