#include "loaders/gptq.h"

#include <fmt/format.h>
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "base/error.h"
#include "loaders/json_fields.h"

namespace qlm {
namespace {

using nlohmann::json;

constexpr uint32_t kPackedPerWord = 8;  // 4-bit codes per int32
// The scale and zero point of a qlm group that lies entirely in row padding
// (only when K is not a multiple of 64): what qlm's RTN quantizer gives an
// all-zero group (smallest f16 >= 2/15), zero point 8. Its codes are 8 too,
// so it decodes to exactly 0 like any padding.
constexpr uint16_t kPaddingGroupScale = 0x3045;
constexpr uint8_t kPaddingGroupZero = 8;

std::string ShapeString(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot open " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw Error("cannot read " + path);
  return ss.str();
}

json ParseJson(std::string_view text, const std::string& source) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) throw Error(source + ": not valid JSON");
  if (!j.is_object()) throw Error(source + ": must be a JSON object");
  return j;
}

// The settings in one quantization object (config.json's
// "quantization_config" or quantize_config.json); `source` names it.
GptqConfig ParseSettings(const json& obj, const std::string& source, bool require_method) {
  const json_fields::Fields f(obj, source);
  if (require_method || f.Has("quant_method")) {
    const std::string method = f.String("quant_method");
    if (method != "gptq") {
      throw Error(source + ": quantization method \"" + method +
                  "\" is not supported (qlm loads unquantized models and GPTQ checkpoints)");
    }
  }
  const int bits = f.Int("bits");
  if (bits != 4) {
    throw Error(source + ": \"bits\" is " + std::to_string(bits) +
                "; qlm loads 4-bit GPTQ checkpoints only");
  }
  const int group = f.Int("group_size");
  if (group != 32 && group != 64 && group != 128) {
    throw Error(source + ": \"group_size\" is " + std::to_string(group) +
                (group == -1 ? " (one group per row)" : "") +
                "; qlm's q4 supports GPTQ group sizes 32, 64 and 128");
  }
  if (f.Bool("is_marlin_format", false)) {
    throw Error(source + ": Marlin-format GPTQ checkpoints are not supported");
  }
  GptqConfig c;
  c.group_size = static_cast<uint32_t>(group);
  c.sym = f.Bool("sym", true);
  c.desc_act = f.Bool("desc_act", false);
  const std::string fmt = f.String("checkpoint_format", "gptq");
  if (fmt == "gptq") {
    c.v2 = false;
  } else if (fmt == "gptq_v2") {
    c.v2 = true;
  } else {
    throw Error(source + ": \"checkpoint_format\" \"" + fmt +
                "\" is not supported (qlm reads \"gptq\" and \"gptq_v2\")");
  }
  return c;
}

void CheckDType(const StoredTensor& t, DType want) {
  if (t.dtype != want) {
    throw Error("GPTQ tensor " + t.name + " has dtype " + DTypeName(t.dtype) + ", expected " +
                DTypeName(want));
  }
}

void CheckShape(const StoredTensor& t, const std::vector<int64_t>& want, const std::string& why) {
  if (t.shape != want) {
    throw Error("GPTQ tensor " + t.name + " has shape " + ShapeString(t.shape) + ", expected " +
                ShapeString(want) + " (" + why + ")");
  }
}

int32_t LoadI32(const uint8_t* p, uint64_t index) {
  int32_t v;
  std::memcpy(&v, p + index * 4, 4);
  return v;
}

uint16_t LoadU16(const uint8_t* p, uint64_t index) {
  uint16_t v;
  std::memcpy(&v, p + index * 2, 2);
  return v;
}

}  // namespace

std::optional<GptqConfig> ParseGptqConfig(std::string_view config_json,
                                          std::string_view quantize_config_json,
                                          const std::string& source) {
  const json config = ParseJson(config_json, source + "/config.json");
  const auto qc = config.find("quantization_config");
  if (qc != config.end() && !qc->is_null()) {
    return ParseSettings(*qc, source + "/config.json: quantization_config", true);
  }
  if (quantize_config_json.empty()) return std::nullopt;
  return ParseSettings(ParseJson(quantize_config_json, source + "/quantize_config.json"),
                       source + "/quantize_config.json", false);
}

std::optional<GptqConfig> ReadGptqConfig(const std::string& dir) {
  const std::string config = ReadFile(dir + "/config.json");
  const std::string qc_path = dir + "/quantize_config.json";
  std::error_code ec;
  const std::string qc = std::filesystem::is_regular_file(qc_path, ec) ? ReadFile(qc_path) : "";
  return ParseGptqConfig(config, qc, dir);
}

GptqLinear FindGptqLinear(const WeightStore& store, const std::string& prefix) {
  GptqLinear in;
  in.name = prefix;
  const auto need = [&](const char* suffix) {
    const StoredTensor* t = store.Find(prefix + suffix);
    if (t == nullptr) {
      throw Error("missing GPTQ tensor " + prefix + suffix + " in " + store.source());
    }
    return t;
  };
  in.qweight = need(".qweight");
  in.qzeros = need(".qzeros");
  in.scales = need(".scales");
  in.g_idx = store.Find(prefix + ".g_idx");
  if (store.Find(prefix + ".bias") != nullptr) {
    throw Error("tensor " + prefix + ".bias in " + store.source() +
                ": linear biases are not supported");
  }
  return in;
}

GptqRepackPlan PlanGptqRepack(const GptqLinear& in, const GptqConfig& config, uint64_t rows,
                              uint64_t cols) {
  const std::string& name = in.name;
  if (in.qweight == nullptr || in.qzeros == nullptr || in.scales == nullptr) {
    throw Error("GPTQ linear " + name + ": qweight, qzeros and scales are all required");
  }
  const uint32_t g = config.group_size;
  if (g != 32 && g != 64 && g != 128) {
    throw Error("GPTQ linear " + name + ": group size " + std::to_string(g) +
                " is not 32, 64 or 128");
  }
  if (rows == 0 || cols == 0 || rows % kPackedPerWord != 0 || cols % kPackedPerWord != 0) {
    throw Error("GPTQ linear " + name + ": " + std::to_string(cols) + " inputs × " +
                std::to_string(rows) + " outputs; both must be positive multiples of 8");
  }
  CheckDType(*in.qweight, DType::kI32);
  CheckDType(*in.qzeros, DType::kI32);
  CheckDType(*in.scales, DType::kF16);
  GptqRepackPlan plan;
  plan.in = in;
  plan.config = config;
  plan.rows = rows;
  plan.cols = cols;
  plan.groups = (cols + g - 1) / g;
  const auto K = static_cast<int64_t>(cols), N = static_cast<int64_t>(rows);
  const auto G = static_cast<int64_t>(plan.groups);
  CheckShape(*in.qweight, {K / 8, N}, "in/8 × out from config.json");
  CheckShape(*in.qzeros, {G, N / 8}, "groups × out/8 from config.json and group_size");
  CheckShape(*in.scales, {G, N}, "groups × out from config.json and group_size");

  // Group of every input; a counting sort by group is the stable sort.
  std::vector<uint64_t> count(plan.groups, 0);
  std::vector<int32_t> gidx(cols);
  if (in.g_idx != nullptr) {
    CheckDType(*in.g_idx, DType::kI32);
    CheckShape(*in.g_idx, {K}, "in from config.json");
    for (uint64_t k = 0; k < cols; ++k) {
      const int32_t v = LoadI32(in.g_idx->data, k);
      if (v < 0 || static_cast<uint64_t>(v) >= plan.groups) {
        throw Error("GPTQ tensor " + in.g_idx->name + ": entry " + std::to_string(k) + " = " +
                    std::to_string(v) + " is outside 0.." + std::to_string(plan.groups - 1));
      }
      gidx[k] = v;
    }
  } else {
    for (uint64_t k = 0; k < cols; ++k) gidx[k] = static_cast<int32_t>(k / g);
  }
  for (uint64_t k = 0; k < cols; ++k) ++count[static_cast<uint64_t>(gidx[k])];
  for (uint64_t i = 0; i < plan.groups; ++i) {
    const uint64_t want = i + 1 < plan.groups ? g : cols - i * g;
    if (count[i] != want) {
      throw Error("GPTQ tensor " + (in.g_idx ? in.g_idx->name : name) + ": group " +
                  std::to_string(i) + " has " + std::to_string(count[i]) + " inputs, expected " +
                  std::to_string(want) + " (group_size " + std::to_string(g) +
                  "); qlm's q4 needs every group to hold exactly group_size inputs");
    }
  }
  std::vector<uint64_t> next(plan.groups);
  for (uint64_t i = 0; i < plan.groups; ++i) next[i] = i * g;
  std::vector<int32_t> perm(cols), inv(cols);
  bool identity = true;
  for (uint64_t k = 0; k < cols; ++k) {
    const uint64_t j = next[static_cast<uint64_t>(gidx[k])]++;
    perm[j] = static_cast<int32_t>(k);
    inv[k] = static_cast<int32_t>(j);
    identity = identity && j == k;
  }
  if (!identity) {
    plan.perm = std::move(perm);
    plan.inv_perm = std::move(inv);
  }
  plan.desc = MakeTensorDesc(Format::kQ4, rows, cols, g, !identity);
  return plan;
}

QuantizedTensor AllocateGptqRepacked(const GptqRepackPlan& plan) {
  QuantizedTensor t;
  t.desc = plan.desc;
  t.blob.Resize(t.desc.total_bytes);
  if (t.desc.has_perm) {
    std::memcpy(t.blob.data() + t.desc.perm_offset, plan.perm.data(), plan.cols * 4);
  }
  return t;
}

void RepackGptqRows(const GptqRepackPlan& plan, uint64_t row_begin, uint64_t row_end,
                    QuantizedTensor& out) {
  const TensorDesc& d = plan.desc;
  if (row_begin > row_end || row_end > d.rows) {
    throw Error("RepackGptqRows: row range [" + std::to_string(row_begin) + ", " +
                std::to_string(row_end) + ") is not inside " + std::to_string(d.rows) + " rows");
  }
  if (out.blob.size() < d.total_bytes || out.desc.total_bytes != d.total_bytes) {
    throw Error("RepackGptqRows: output tensor was not allocated for " + plan.in.name);
  }
  const uint64_t N = plan.rows, K = plan.cols, G = d.group_size;
  const uint64_t gpr = d.groups_per_row, pc = d.padded_cols;
  const uint8_t* qweight = plan.in.qweight->data;
  const uint8_t* qzeros = plan.in.qzeros->data;
  const uint8_t* scales = plan.in.scales->data;
  const bool permuted = !plan.inv_perm.empty();
  uint8_t* blob = out.blob.data();
  auto* out_scales = reinterpret_cast<uint16_t*>(blob + d.scales_offset);
  uint8_t* out_zeros = blob + d.zeros_offset;

  // Rows are repacked in blocks so that each packed qweight row is read
  // contiguously while the block's code rows stay in cache.
  constexpr uint64_t kBlock = 32;
  std::vector<uint8_t> codes(kBlock * pc);
  std::vector<int32_t> words(kBlock);
  std::vector<uint8_t> zero(gpr);
  for (uint64_t n0 = row_begin; n0 < row_end; n0 += kBlock) {
    const uint64_t nb = std::min(kBlock, row_end - n0);
    for (uint64_t kk = 0; kk < K / kPackedPerWord; ++kk) {
      std::memcpy(words.data(), qweight + (kk * N + n0) * 4, nb * 4);
      for (uint64_t b = 0; b < kPackedPerWord; ++b) {
        const uint64_t k = kk * kPackedPerWord + b;
        const uint64_t j = permuted ? static_cast<uint64_t>(plan.inv_perm[k]) : k;
        for (uint64_t i = 0; i < nb; ++i) {
          codes[i * pc + j] =
              static_cast<uint8_t>((static_cast<uint32_t>(words[i]) >> (4 * b)) & 15u);
        }
      }
    }
    for (uint64_t i = 0; i < nb; ++i) {
      const uint64_t n = n0 + i;
      uint8_t* c = codes.data() + i * pc;
      uint16_t* s_out = out_scales + n * gpr;
      for (uint64_t grp = 0; grp < gpr; ++grp) {
        if (grp >= plan.groups) {  // entirely row padding
          s_out[grp] = kPaddingGroupScale;
          zero[grp] = kPaddingGroupZero;
          continue;
        }
        const uint16_t s = LoadU16(scales, grp * N + n);
        if ((s & 0x7c00u) == 0x7c00u) {
          throw Error("GPTQ tensor " + plan.in.scales->name + ": scale of group " +
                      std::to_string(grp) + ", output " + std::to_string(n) +
                      " is not finite (f16 " + fmt::format("{:#06x}", s) + ")");
        }
        s_out[grp] = s;
        const uint32_t word = static_cast<uint32_t>(LoadI32(qzeros, grp * (N / 8) + n / 8));
        uint32_t z = (word >> (4 * (n % 8))) & 15u;
        if (!plan.config.v2) z += 1;
        if (z == 16) {
          // AutoGPTQ v1 zero point 16: exact as codes q − 1 with z = 15,
          // possible only when no code of the group is 0.
          const uint64_t j0 = grp * G, j1 = std::min(K, j0 + G);
          for (uint64_t j = j0; j < j1; ++j) {
            if (c[j] == 0) {
              throw Error("GPTQ tensor " + plan.in.qzeros->name + ": zero point 16 (stored 15, " +
                          "checkpoint_format gptq) in group " + std::to_string(grp) + ", output " +
                          std::to_string(n) +
                          " with a code 0: not representable in qlm's q4 (zero points 0..15)");
            }
          }
          for (uint64_t j = j0; j < j1; ++j) --c[j];
          z = 15;
        }
        zero[grp] = static_cast<uint8_t>(z);
      }
      std::memcpy(out_zeros + n * gpr, zero.data(), gpr);
      for (uint64_t j = K; j < pc; ++j) c[j] = zero[j / G];  // padding decodes to 0
      uint8_t* dst = blob + d.data_offset + n * d.row_bytes;
      for (uint64_t blk = 0; blk < pc / kQ4BlockSize; ++blk) {
        const uint8_t* src = c + blk * kQ4BlockSize;
        for (uint64_t b = 0; b < kQ4BlockSize / 2; ++b) {
          dst[blk * 32 + b] = static_cast<uint8_t>(src[b] | (src[b + 32] << 4));
        }
      }
    }
  }
}

QuantizedTensor RepackGptqLinear(const GptqLinear& in, const GptqConfig& config, uint64_t rows,
                                 uint64_t cols) {
  const GptqRepackPlan plan = PlanGptqRepack(in, config, rows, cols);
  QuantizedTensor t = AllocateGptqRepacked(plan);
  RepackGptqRows(plan, 0, rows, t);
  return t;
}

}  // namespace qlm
