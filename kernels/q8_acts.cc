// Buffer sizes and the block choice for the int8-activation (Q8Acts) matmul
// path.
#include "kernels/registry.h"

namespace qlm::kernels {
namespace {

// K padded to 64 so both the int8 (32) and q4 (64) weight layouts line up.
size_t PaddedK(size_t k) { return (k + 63) / 64 * 64; }

}  // namespace

size_t Q8ActsQuantBytes(size_t m, size_t k) { return m * PaddedK(k); }

size_t Q8ActsBlockCount(size_t m, size_t k) { return m * (PaddedK(k) / kQ8ActBlock); }

size_t Q8ActBlockFor(const TensorDesc& w, size_t m) {
  const bool wide = m > 1 && w.format == Format::kQ4 && w.group_size % kQ8ActBlockWide == 0;
  return wide ? kQ8ActBlockWide : kQ8ActBlock;
}

}  // namespace qlm::kernels
