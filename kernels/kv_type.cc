// Names of the KV cache storage formats (KvType, kernels/registry.h).
#include "kernels/registry.h"

namespace qlm::kernels {

const char* KvTypeName(KvType t) {
  switch (t) {
    case KvType::kF32:
      return "f32";
    case KvType::kBF16:
      return "bf16";
    case KvType::kInt8:
      return "int8";
    case KvType::kSFP8:
      return "sfp8";
  }
  return "unknown";
}

}  // namespace qlm::kernels
