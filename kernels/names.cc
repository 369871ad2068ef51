#include "kernels/registry.h"

namespace qlm::kernels {

const char* IsaName(Isa isa) {
  switch (isa) {
    case Isa::kScalar:
      return "scalar";
    case Isa::kAvx2:
      return "avx2";
    case Isa::kAvx512:
      return "avx512";
    case Isa::kNeon:
      return "neon";
  }
  return "unknown";
}

const char* OpName(Op op) {
  static constexpr const char* kNames[kNumOps] = {
      "matmul_f32",    "matmul_bf16",    "matmul_int8",  "matmul_q4", "matmul_sfp8",
      "quantize_acts", "matmul_q8_int8", "matmul_q8_q4", "attention", "rmsnorm",
      "rope",          "geglu",          "swiglu",       "softmax",   "add",
      "scale",         "softcap",        "argmax",       "read_sum"};
  const int i = static_cast<int>(op);
  return i >= 0 && i < kNumOps ? kNames[i] : "unknown";
}

}  // namespace qlm::kernels
