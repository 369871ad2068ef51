#include "core/convert.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <vector>

#include "base/error.h"
#include "core/thread_pool.h"
#include "quant/half.h"

namespace qlm {
namespace {

constexpr uint64_t kBlockRows = 64;  // rows staged as f32 at a time, per thread

template <class Fn>
void ForBlocks(ThreadPool* pool, uint64_t rows, Fn&& fn) {
  const uint64_t blocks = (rows + kBlockRows - 1) / kBlockRows;
  const auto run = [&](size_t b0, size_t b1) {
    std::vector<float> staging;
    for (size_t b = b0; b < b1; ++b) {
      const uint64_t r0 = b * kBlockRows, r1 = std::min(rows, r0 + kBlockRows);
      fn(r0, r1, staging);
    }
  };
  if (pool == nullptr) {
    run(0, blocks);
  } else {
    pool->ParallelFor(blocks, 1, [&](size_t b0, size_t b1, size_t) { run(b0, b1); });
  }
}

}  // namespace

void ConvertSource::ReadRows(uint64_t r0, uint64_t r1, float* out) const {
  if (view != nullptr) {
    for (uint64_t r = r0; r < r1; ++r) DequantizeRow(*view, r, out + (r - r0) * cols);
    return;
  }
  if (stored == nullptr) throw Error("ConvertSource " + name + ": no source tensor");
  const uint64_t n = (r1 - r0) * cols;
  const uint8_t* src = stored->data + r0 * cols * DTypeSize(stored->dtype);
  switch (stored->dtype) {
    case DType::kF32:
      std::memcpy(out, src, n * sizeof(float));
      return;
    case DType::kBF16:
      for (uint64_t i = 0; i < n; ++i) {
        uint16_t b;
        std::memcpy(&b, src + 2 * i, 2);
        out[i] = BF16ToF32(b);
      }
      return;
    case DType::kF16:
      for (uint64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        out[i] = F16ToF32(h);
      }
      return;
    case DType::kI32:
      break;
  }
  throw Error("tensor " + name + " has dtype " + DTypeName(stored->dtype) +
              "; a float tensor (F32, BF16 or F16) is needed here");
}

QuantizedTensor ConvertTensor(const ConvertSource& src, Format format,
                              const QuantizeOptions& options, ThreadPool* pool) {
  const uint64_t rows = src.rows, cols = src.cols;
  if (src.stored != nullptr) {
    if (static_cast<uint64_t>(src.stored->numel()) != rows * cols) {
      throw Error("tensor " + src.name + ": size does not match [" + std::to_string(rows) + ", " +
                  std::to_string(cols) + "]");
    }
    if (src.stored->dtype == DType::kI32) src.ReadRows(0, 0, nullptr);  // throws the dtype error
  } else if (src.view == nullptr || src.view->desc.rows != rows || src.view->desc.cols != cols) {
    throw Error("tensor " + src.name + ": no source of shape [" + std::to_string(rows) + ", " +
                std::to_string(cols) + "]");
  }
  QuantizeOptions o = options;
  o.perm = nullptr;
  QuantizedTensor t = AllocateQuantized(format, rows, cols, o);
  if (format == Format::kSFP8) {
    std::vector<float> block_max((rows + kBlockRows - 1) / kBlockRows, 0.0f);
    ForBlocks(pool, rows, [&](uint64_t r0, uint64_t r1, std::vector<float>& staging) {
      staging.resize((r1 - r0) * cols);
      src.ReadRows(r0, r1, staging.data());
      float m = 0.0f;
      for (const float v : staging) {
        const float a = std::fabs(v);
        if (a <= FLT_MAX) m = std::max(m, a);
      }
      block_max[r0 / kBlockRows] = m;
    });
    t.desc.tensor_scale = Sfp8ScaleForMaxAbs(*std::max_element(block_max.begin(), block_max.end()));
  }
  ForBlocks(pool, rows, [&](uint64_t r0, uint64_t r1, std::vector<float>& staging) {
    staging.resize((r1 - r0) * cols);
    src.ReadRows(r0, r1, staging.data());
    QuantizeRowsInto(staging.data(), r0, r1, t, o);
  });
  return t;
}

}  // namespace qlm
