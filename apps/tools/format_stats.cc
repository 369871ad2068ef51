// qlm-format-stats: how much each weight format loses on real weights.
//
// Loads weight matrices from a safetensors file (or an HF model directory),
// quantizes each with every format qlm stores (f32, bf16, int8, q4 with group
// 32/64/128 symmetric and asymmetric, sfp8), decodes it again with the scalar
// reference decoder and prints, per tensor and format, RMSE / RMS(w), the
// largest error relative to max|w| and the storage cost in bits per weight
// (the whole blob: codes, scales, zero points and padding).
//
//   qlm-format-stats [MODEL_DIR_OR_SAFETENSORS] [--tensor NAME]... [--all]
//   qlm-format-stats --time ROWSxCOLS   (single-threaded quantization speed on
//                                        Gaussian data of that shape)
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "base/error.h"
#include "loaders/weight_store.h"
#include "quant/half.h"
#include "quant/quantize.h"

namespace qlm {
namespace {

struct Variant {
  const char* label;
  Format format;
  uint32_t group;
  bool asymmetric;
};

constexpr Variant kVariants[] = {
    {"f32", Format::kF32, 0, true},           {"bf16", Format::kBF16, 0, true},
    {"int8 (g32)", Format::kInt8, 0, true},   {"sfp8", Format::kSFP8, 0, true},
    {"q4 g32 asym", Format::kQ4, 32, true},   {"q4 g32 sym", Format::kQ4, 32, false},
    {"q4 g64 asym", Format::kQ4, 64, true},   {"q4 g64 sym", Format::kQ4, 64, false},
    {"q4 g128 asym", Format::kQ4, 128, true}, {"q4 g128 sym", Format::kQ4, 128, false},
};
constexpr size_t kNumVariants = sizeof(kVariants) / sizeof(kVariants[0]);

// Sums over one or more tensors, so --all can report an aggregate.
struct Stats {
  double sq_err = 0, sq_ref = 0, max_err = 0, max_ref = 0;
  uint64_t bytes = 0, weights = 0;
};

struct Matrix {
  std::vector<float> w;
  uint64_t rows = 0, cols = 0;
};

Matrix ToF32(const StoredTensor& t) {
  if (t.shape.empty() || t.numel() == 0) throw Error("tensor " + t.name + " is empty");
  Matrix m;
  m.cols = static_cast<uint64_t>(t.shape.back());
  m.rows = static_cast<uint64_t>(t.numel()) / m.cols;  // leading dims flattened
  m.w.resize(m.rows * m.cols);
  const size_t n = m.w.size();
  switch (t.dtype) {
    case DType::kF32:
      std::memcpy(m.w.data(), t.data, n * 4);
      break;
    case DType::kBF16:
    case DType::kF16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, t.data + 2 * i, 2);  // data need not be aligned
        m.w[i] = t.dtype == DType::kBF16 ? BF16ToF32(h) : F16ToF32(h);
      }
      break;
    default:
      throw UsageError("tensor " + t.name + " has dtype " + DTypeName(t.dtype) +
                       ", not a floating-point weight");
  }
  return m;
}

void Accumulate(const Matrix& m, const Variant& v, Stats& s) {
  QuantizeOptions o;
  o.group_size = v.group;
  o.asymmetric = v.asymmetric;
  const QuantizedTensor q = Quantize(v.format, m.w.data(), m.rows, m.cols, o);
  const QTensor view = q.view();
  std::vector<float> row(m.cols);
  for (uint64_t r = 0; r < m.rows; ++r) {
    DequantizeRow(view, r, row.data());
    const float* w = m.w.data() + r * m.cols;
    for (uint64_t j = 0; j < m.cols; ++j) {
      const double e = static_cast<double>(row[j]) - w[j];
      s.sq_err += e * e;
      s.sq_ref += static_cast<double>(w[j]) * w[j];
      s.max_err = std::max(s.max_err, std::fabs(e));
      s.max_ref = std::max(s.max_ref, std::fabs(static_cast<double>(w[j])));
    }
  }
  s.bytes += q.desc.total_bytes;
  s.weights += m.rows * m.cols;
}

void PrintTable(const std::string& title, const Stats (&stats)[kNumVariants]) {
  std::printf("\n%s\n\n", title.c_str());
  std::printf("| format       | bits/weight | RMSE / RMS(w) | max err / max abs(w) |\n");
  std::printf("|--------------|------------:|--------------:|---------------------:|\n");
  for (size_t i = 0; i < kNumVariants; ++i) {
    const Stats& s = stats[i];
    const double rel = s.sq_ref > 0 ? std::sqrt(s.sq_err / s.sq_ref) : 0.0;
    const double rel_max = s.max_ref > 0 ? s.max_err / s.max_ref : 0.0;
    std::printf("| %-12s | %11.3f | %13.3e | %20.3e |\n", kVariants[i].label,
                8.0 * static_cast<double>(s.bytes) / static_cast<double>(s.weights), rel, rel_max);
  }
}

// Times Quantize-equivalent work (AllocateQuantized + QuantizeRowsInto over
// the whole tensor, single-threaded) for a rows × cols matrix. The input rows
// cycle through a 4096-row Gaussian block so that only the output is full size.
void TimeQuantize(const std::string& shape) {
  uint64_t rows = 0, cols = 0;
  char x = 0;
  if (std::sscanf(shape.c_str(), "%" SCNu64 "%c%" SCNu64, &rows, &x, &cols) != 3 || x != 'x' ||
      rows == 0 || cols == 0) {
    throw UsageError("--time wants ROWSxCOLS (e.g. 256000x2304), got '" + shape + "'");
  }
  const uint64_t block_rows = std::min<uint64_t>(rows, 4096);
  std::vector<float> block(block_rows * cols);
  std::mt19937 rng(1);
  std::normal_distribution<float> dist(0.0f, 0.02f);
  for (float& v : block) v = dist(rng);
  std::printf("\nsingle-threaded quantization of a [%" PRIu64 ", %" PRIu64
              "] matrix (%.1f M weights)\n\n",
              rows, cols, static_cast<double>(rows * cols) / 1e6);
  std::printf("| format       | seconds | ns/weight |\n|--------------|--------:|----------:|\n");
  for (const Variant& v : kVariants) {
    if (v.format == Format::kF32) continue;  // a memcpy
    QuantizeOptions o;
    o.group_size = v.group;
    o.asymmetric = v.asymmetric;
    const auto t0 = std::chrono::steady_clock::now();
    QuantizedTensor t = AllocateQuantized(v.format, rows, cols, o);
    if (v.format == Format::kSFP8) {
      t.desc.tensor_scale = Sfp8TensorScale(block.data(), block.size());
    }
    for (uint64_t r = 0; r < rows; r += block_rows) {
      const uint64_t n = std::min(block_rows, rows - r);
      QuantizeRowsInto(block.data(), r, r + n, t, o);
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("| %-12s | %7.2f | %9.2f |\n", v.label, s,
                s * 1e9 / static_cast<double>(rows * cols));
  }
}

int Run(int argc, char** argv) {
  std::string model =
      std::filesystem::path(QLM_SOURCE_DIR "/../shared/models/austen-gemma3").lexically_normal();
  std::vector<std::string> names;
  bool all = false;
  std::string time_shape;
  CLI::App app{"qlm-format-stats: reconstruction error of every qlm weight format"};
  app.add_option("model", model, "model directory or .safetensors file")->capture_default_str();
  app.add_option("--tensor", names, "tensor to measure (repeatable)");
  app.add_flag("--all", all, "also aggregate over every 2-D tensor in the model");
  app.add_option("--time", time_shape,
                 "only time single-threaded quantization of a ROWSxCOLS Gaussian matrix");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (!time_shape.empty()) {
    TimeQuantize(time_shape);
    return 0;
  }

  const bool is_file = std::filesystem::is_regular_file(model);
  if (!is_file && !std::filesystem::is_directory(model)) {
    throw UsageError("no model directory or safetensors file at " + model);
  }
  const WeightStore store =
      is_file ? WeightStore::OpenSafetensors(model) : WeightStore::OpenHfDir(model);
  if (names.empty()) {
    for (const char* n : {"model.layers.0.self_attn.q_proj.weight",
                          "model.layers.0.mlp.gate_proj.weight", "model.embed_tokens.weight"}) {
      if (store.Find(n)) names.emplace_back(n);
    }
    if (names.empty()) {
      throw UsageError("none of the default tensors is in " + model + "; name one with --tensor");
    }
  }
  std::printf("qlm-format-stats: %s\n", model.c_str());
  for (const std::string& name : names) {
    const StoredTensor& t = store.Get(name);
    const Matrix m = ToF32(t);
    Stats stats[kNumVariants];
    for (size_t i = 0; i < kNumVariants; ++i) Accumulate(m, kVariants[i], stats[i]);
    PrintTable(name + " [" + std::to_string(m.rows) + ", " + std::to_string(m.cols) + "] (" +
                   DTypeName(t.dtype) + ")",
               stats);
  }
  if (all) {
    Stats stats[kNumVariants];
    uint64_t tensors = 0, weights = 0;
    for (const auto& [name, t] : store.tensors()) {
      if (t.shape.size() != 2 || t.dtype == DType::kI32) continue;
      const Matrix m = ToF32(t);
      for (size_t i = 0; i < kNumVariants; ++i) Accumulate(m, kVariants[i], stats[i]);
      ++tensors;
      weights += m.rows * m.cols;
    }
    PrintTable("all " + std::to_string(tensors) + " 2-D tensors (" + std::to_string(weights) +
                   " weights; errors summed over all of them)",
               stats);
  }
  return 0;
}

}  // namespace
}  // namespace qlm

int main(int argc, char** argv) {
  try {
    return qlm::Run(argc, argv);
  } catch (const qlm::UsageError& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  } catch (const qlm::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
