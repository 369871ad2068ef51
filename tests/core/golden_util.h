// Shared helpers for tests that compare qlm against the golden logits in
// ../shared (see ../shared/README.md): locating the models and reading the
// golden files.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace qlm::testing {

// The four shared models, relative to QLM_SHARED_DIR.
inline const std::vector<std::string>& GoldenModels() {
  static const std::vector<std::string> kModels = {"models/austen-gemma3", "fixtures/tiny-llama",
                                                   "fixtures/tiny-gemma", "fixtures/tiny-gemma2"};
  return kModels;
}

inline std::string SharedPath(const std::string& rel) {
  return std::string(QLM_SHARED_DIR) + "/" + rel;
}

struct Golden {
  std::string name;  // e.g. "fixtures/tiny-llama/golden/1"
  std::vector<int32_t> ids;
  std::vector<int32_t> greedy;  // greedy continuation
  std::vector<float> logits;    // [ids.size() × vocab]
  size_t vocab = 0;
};

// Every golden/N.json (N = 0, 1, ...) of a model directory. Fails the
// calling test with the missing path if there is none.
inline std::vector<Golden> ReadGoldens(const std::string& model_dir) {
  std::vector<Golden> out;
  for (int n = 0;; ++n) {
    const std::string base = model_dir + "/golden/" + std::to_string(n);
    std::ifstream js(base + ".json");
    if (!js) break;
    const nlohmann::json j = nlohmann::json::parse(js);
    Golden g;
    g.name = base;
    g.ids = j.at("ids").get<std::vector<int32_t>>();
    g.greedy = j.at("greedy_continuation").get<std::vector<int32_t>>();
    const auto shape = j.at("logits_shape").get<std::vector<size_t>>();
    g.vocab = shape.at(1);
    EXPECT_EQ(shape.at(0), g.ids.size()) << base;
    std::ifstream f(base + ".f32", std::ios::binary);
    EXPECT_TRUE(f.good()) << "missing " << base << ".f32";
    g.logits.resize(shape[0] * shape[1]);
    f.read(reinterpret_cast<char*>(g.logits.data()),
           static_cast<std::streamsize>(g.logits.size() * sizeof(float)));
    EXPECT_EQ(static_cast<size_t>(f.gcount()), g.logits.size() * sizeof(float)) << base;
    out.push_back(std::move(g));
  }
  EXPECT_FALSE(out.empty()) << "no golden files in " << model_dir
                            << "/golden (expected ../shared beside the repository)";
  return out;
}

// max |a - b| over n floats.
inline float MaxAbsDiff(const float* a, const float* b, size_t n) {
  float m = 0.0f;
  for (size_t i = 0; i < n; ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

inline float MaxAbs(const float* a, size_t n) {
  float m = 0.0f;
  for (size_t i = 0; i < n; ++i) m = std::max(m, std::fabs(a[i]));
  return m;
}

}  // namespace qlm::testing
