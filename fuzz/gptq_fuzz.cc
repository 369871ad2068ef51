// Fuzzes the AutoGPTQ import (loaders/gptq.h): PlanGptqRepack checks the
// stored tensors of one linear, RepackGptqLinear repacks them into q4. The
// input describes one linear:
//   byte 0   flags: bit 0 checkpoint_format gptq_v2; bit 1 has g_idx; bit 2
//            g_idx built from a shuffle (so that it is usually valid) rather
//            than taken raw; bit 3 dtypes perturbed; bit 4 shapes perturbed
//   byte 1   group size: 32, 64, 128, or (rarely) something else
//   byte 2   K / 8 - 1 (inputs, up to 256)
//   byte 3   N / 8 - 1 (outputs, up to 128)
//   rest     the bytes of qweight, qzeros, scales and g_idx, in that order
//            (zeros where the input runs out)
// When the repack succeeds, every weight must decode (DequantizeRow) to
// exactly AutoGPTQ's formula w[n][k] = scale[g][n] · (q[k][n] − z[g][n]),
// g = g_idx[k] — the differential oracle for the whole repack.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "base/error.h"
#include "fuzz/fuzz_util.h"
#include "loaders/gptq.h"
#include "quant/half.h"
#include "quant/quantize.h"

namespace {

int32_t LoadI32(const std::vector<uint8_t>& b, uint64_t i) {
  int32_t v;
  std::memcpy(&v, b.data() + 4 * i, 4);
  return v;
}

uint16_t LoadU16(const std::vector<uint8_t>& b, uint64_t i) {
  uint16_t v;
  std::memcpy(&v, b.data() + 2 * i, 2);
  return v;
}

std::vector<uint8_t> Payload(qlm::fuzz::Input& in, uint64_t bytes) {
  std::vector<uint8_t> b(bytes, 0);
  const std::string_view s = in.Take(bytes);
  if (!s.empty()) std::memcpy(b.data(), s.data(), s.size());
  return b;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  qlm::fuzz::Input in(data, size);
  const uint8_t flags = in.Byte();
  const uint8_t gsel = in.Byte();
  static constexpr uint32_t kGroups[] = {32, 64, 128, 32, 64, 128, 32, 64, 128, 16, 0, 256};
  qlm::GptqConfig config;
  config.group_size = kGroups[gsel % 12];
  config.v2 = flags & 1;
  const uint64_t K = 8 * (in.Byte() % 32 + 1);
  const uint64_t N = 8 * (in.Byte() % 16 + 1);
  const uint64_t g = config.group_size != 0 ? config.group_size : 128;
  const uint64_t G = (K + g - 1) / g;

  // Stored shapes and dtypes as AutoGPTQ writes them, optionally perturbed.
  std::vector<int64_t> qw_shape{static_cast<int64_t>(K / 8), static_cast<int64_t>(N)};
  std::vector<int64_t> qz_shape{static_cast<int64_t>(G), static_cast<int64_t>(N / 8)};
  std::vector<int64_t> sc_shape{static_cast<int64_t>(G), static_cast<int64_t>(N)};
  std::vector<int64_t> gi_shape{static_cast<int64_t>(K)};
  qlm::DType qw_dtype = qlm::DType::kI32, qz_dtype = qlm::DType::kI32;
  qlm::DType sc_dtype = qlm::DType::kF16, gi_dtype = qlm::DType::kI32;
  if (flags & 8) {
    const uint8_t which = in.Byte();
    const auto dt = static_cast<qlm::DType>(in.Byte() % 4);
    (which % 4 == 0   ? qw_dtype
     : which % 4 == 1 ? qz_dtype
     : which % 4 == 2 ? sc_dtype
                      : gi_dtype) = dt;
  }
  if (flags & 16) {
    const uint8_t which = in.Byte();
    const int64_t delta = static_cast<int8_t>(in.Byte());
    std::vector<int64_t>* shapes[] = {&qw_shape, &qz_shape, &sc_shape, &gi_shape};
    std::vector<int64_t>& s = *shapes[which % 4];
    if (which & 4) {
      s.push_back(1);
    } else {
      s[(which >> 3) % s.size()] += delta;
    }
  }
  // The stored bytes are sized from the (possibly perturbed) stored shapes,
  // as a safetensors file would give them (negative dimensions: no bytes).
  auto bytes_of = [](const std::vector<int64_t>& shape, qlm::DType dt) {
    uint64_t n = qlm::DTypeSize(dt);
    for (const int64_t d : shape) n *= d > 0 ? static_cast<uint64_t>(d) : 0;
    return n;
  };
  std::vector<uint8_t> qweight = Payload(in, bytes_of(qw_shape, qw_dtype));
  std::vector<uint8_t> qzeros = Payload(in, bytes_of(qz_shape, qz_dtype));
  std::vector<uint8_t> scales = Payload(in, bytes_of(sc_shape, sc_dtype));
  std::vector<uint8_t> g_idx;
  if ((flags & 4) && gi_shape == std::vector<int64_t>{static_cast<int64_t>(K)} &&
      gi_dtype == qlm::DType::kI32) {
    // A valid act-order assignment: shuffle 0..K-1, input perm[j] in group j / g.
    std::vector<int32_t> perm(K);
    for (uint64_t k = 0; k < K; ++k) perm[k] = static_cast<int32_t>(k);
    for (uint64_t k = K - 1; k > 0; --k) std::swap(perm[k], perm[in.U16() % (k + 1)]);
    g_idx.assign(K * 4, 0);
    for (uint64_t j = 0; j < K; ++j) {
      const auto grp = static_cast<int32_t>(j / g);
      std::memcpy(g_idx.data() + 4 * static_cast<uint64_t>(perm[j]), &grp, 4);
    }
  } else {
    g_idx = Payload(in, bytes_of(gi_shape, gi_dtype));
  }

  auto stored = [](const char* name, qlm::DType dt, const std::vector<int64_t>& shape,
                   const std::vector<uint8_t>& bytes) {
    qlm::StoredTensor t;
    t.name = name;
    t.dtype = dt;
    t.shape = shape;
    t.data = bytes.data();
    t.bytes = bytes.size();
    return t;
  };
  const qlm::StoredTensor t_qweight = stored("fuzz.qweight", qw_dtype, qw_shape, qweight);
  const qlm::StoredTensor t_qzeros = stored("fuzz.qzeros", qz_dtype, qz_shape, qzeros);
  const qlm::StoredTensor t_scales = stored("fuzz.scales", sc_dtype, sc_shape, scales);
  const qlm::StoredTensor t_g_idx = stored("fuzz.g_idx", gi_dtype, gi_shape, g_idx);
  qlm::GptqLinear linear;
  linear.name = "fuzz";
  linear.qweight = &t_qweight;
  linear.qzeros = &t_qzeros;
  linear.scales = &t_scales;
  linear.g_idx = (flags & 2) ? &t_g_idx : nullptr;

  qlm::QuantizedTensor q;
  try {
    q = qlm::RepackGptqLinear(linear, config, N, K);
  } catch (const qlm::Error&) {
    return 0;
  }
  // Accepted: the stored tensors had exactly AutoGPTQ's shapes and dtypes.
  FUZZ_CHECK(q.desc.rows == N && q.desc.cols == K && q.desc.group_size == g);
  FUZZ_CHECK(qweight.size() == K / 8 * N * 4 && qzeros.size() == G * N / 8 * 4);
  FUZZ_CHECK(scales.size() == G * N * 2);
  std::vector<float> row(K);
  for (uint64_t n = 0; n < N; ++n) {
    qlm::DequantizeRow(q.view(), n, row.data());
    for (uint64_t k = 0; k < K; ++k) {
      const uint64_t grp = linear.g_idx ? static_cast<uint64_t>(LoadI32(g_idx, k)) : k / g;
      const auto word = static_cast<uint32_t>(LoadI32(qweight, (k / 8) * N + n));
      const int code = static_cast<int>((word >> (4 * (k % 8))) & 15u);
      const auto zword = static_cast<uint32_t>(LoadI32(qzeros, grp * (N / 8) + n / 8));
      const int zero = static_cast<int>((zword >> (4 * (n % 8))) & 15u) + (config.v2 ? 0 : 1);
      const float want =
          static_cast<float>(code - zero) * qlm::F16ToF32(LoadU16(scales, grp * N + n));
      FUZZ_CHECK(row[k] == want);
    }
  }
  return 0;
}
