// Helper for the CLI tests (run_cli_tests.sh), so they need no Python:
//   golden_tool ids GOLDEN.json              prints the prompt ids as 2,651,8
//   golden_tool greedy GOLDEN.json           prints the greedy continuation likewise
//   golden_tool compare OUT.f32 GOLDEN.f32   exit 0 iff same size and
//                                            max|Δ| <= 1e-3 + 1e-3 · max|golden|
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace {

std::vector<float> ReadF32(const char* path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    std::fprintf(stderr, "golden_tool: cannot read %s\n", path);
    std::exit(2);
  }
  std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::vector<float> v(bytes.size() / sizeof(float));
  std::copy(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(v.size() * sizeof(float)),
            reinterpret_cast<char*>(v.data()));
  if (bytes.size() % sizeof(float) != 0) {
    std::fprintf(stderr, "golden_tool: %s is not a whole number of floats\n", path);
    std::exit(1);
  }
  return v;
}

int PrintList(const char* path, const char* key) {
  std::ifstream f(path);
  if (!f) {
    std::fprintf(stderr, "golden_tool: cannot read %s\n", path);
    return 2;
  }
  const auto ids = nlohmann::json::parse(f).at(key).get<std::vector<int>>();
  for (size_t i = 0; i < ids.size(); ++i) std::printf("%s%d", i ? "," : "", ids[i]);
  std::printf("\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string cmd = argc > 1 ? argv[1] : "";
  if (cmd == "ids" && argc == 3) return PrintList(argv[2], "ids");
  if (cmd == "greedy" && argc == 3) return PrintList(argv[2], "greedy_continuation");
  if (cmd == "compare" && argc == 4) {
    const std::vector<float> out = ReadF32(argv[2]), ref = ReadF32(argv[3]);
    if (out.size() != ref.size()) {
      std::fprintf(stderr, "golden_tool: %zu floats in %s, %zu in %s\n", out.size(), argv[2],
                   ref.size(), argv[3]);
      return 1;
    }
    float max_ref = 0.0f, max_diff = 0.0f;
    for (size_t i = 0; i < ref.size(); ++i) {
      max_ref = std::max(max_ref, std::fabs(ref[i]));
      const float d = std::fabs(out[i] - ref[i]);
      if (!(d <= max_diff)) max_diff = d;  // NaN sticks
    }
    const float tol = 1e-3f + 1e-3f * max_ref;
    std::printf("max |dlogit| %g, tolerance %g\n", max_diff, tol);
    return max_diff <= tol ? 0 : 1;
  }
  std::fprintf(stderr, "usage: golden_tool ids|greedy JSON | compare OUT.f32 GOLDEN.f32\n");
  return 2;
}
