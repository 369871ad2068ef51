// Rotary position embedding tables. The graph keeps one RopeFreqs per RoPE
// flavour a model uses (gemma3: local and global) and fills cos/sin rows for
// just the positions of the current batch, so memory does not grow with the
// context length. The rotation itself is the kernel table's `rope`.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "loaders/model_config.h"

namespace qlm {

struct RopeFreqs {
  std::vector<float> inv_freq;     // head_dim / 2 entries
  float attention_scaling = 1.0f;  // multiplies cos and sin (1 for every type we support)
};

// Hugging Face's default inverse frequencies, 1 / base^(2i / head_dim),
// rescaled per `scaling` (linear: ÷ factor; llama3: the wavelength-banded
// formula of modeling_rope_utils._compute_llama3_parameters). Computed in f32
// step by step like PyTorch does, so angles match the reference bit for bit
// as far as libm allows.
RopeFreqs MakeRopeFreqs(float base, int head_dim, const RopeScaling& scaling);

// cos/sin rows [n, head_dim / 2] for positions pos0 .. pos0 + n - 1.
void FillRopeTables(const RopeFreqs& f, int32_t pos0, size_t n, float* cos_out, float* sin_out);

}  // namespace qlm
