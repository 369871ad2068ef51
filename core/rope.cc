#include "core/rope.h"

#include <cmath>
#include <numbers>

#include "base/error.h"

namespace qlm {

RopeFreqs MakeRopeFreqs(float base, int head_dim, const RopeScaling& scaling) {
  if (head_dim <= 0 || head_dim % 2 != 0) {
    throw Error("RoPE needs an even head_dim, got " + std::to_string(head_dim));
  }
  if (!(base > 0.0f)) throw Error("RoPE base (rope_theta) must be > 0");
  RopeFreqs f;
  const int half = head_dim / 2;
  f.inv_freq.resize(half);
  for (int i = 0; i < half; ++i) {
    // torch: 1.0 / (base ** (arange(0, dim, 2).float() / dim)), all in f32.
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(head_dim);
    f.inv_freq[i] = 1.0f / std::pow(base, exponent);
  }
  switch (scaling.type) {
    case RopeScaling::Type::kNone:
      break;
    case RopeScaling::Type::kLinear:
      for (float& v : f.inv_freq) v /= scaling.factor;
      break;
    case RopeScaling::Type::kLlama3: {
      const float factor = scaling.factor;
      const float low = scaling.low_freq_factor, high = scaling.high_freq_factor;
      const float old_ctx = static_cast<float>(scaling.original_max_position_embeddings);
      const float low_freq_wavelen = old_ctx / low;
      const float high_freq_wavelen = old_ctx / high;
      for (float& v : f.inv_freq) {
        const float wavelen = 2.0f * std::numbers::pi_v<float> / v;
        // Long wavelengths (low frequencies) are divided by factor, short
        // ones kept, and the band between is interpolated smoothly.
        const float scaled = wavelen > low_freq_wavelen ? v / factor : v;
        const bool medium = !(wavelen < high_freq_wavelen) && !(wavelen > low_freq_wavelen);
        if (medium) {
          const float smooth = (old_ctx / wavelen - low) / (high - low);
          v = (1.0f - smooth) * scaled / factor + smooth * scaled;
        } else {
          v = scaled;
        }
      }
      break;
    }
  }
  return f;
}

void FillRopeTables(const RopeFreqs& f, int32_t pos0, size_t n, float* cos_out, float* sin_out) {
  const size_t half = f.inv_freq.size();
  for (size_t t = 0; t < n; ++t) {
    // torch computes inv_freq @ position in f32, then cos/sin of that f32.
    const float pos = static_cast<float>(pos0 + static_cast<int32_t>(t));
    float* c = cos_out + t * half;
    float* s = sin_out + t * half;
    for (size_t i = 0; i < half; ++i) {
      const float angle = f.inv_freq[i] * pos;
      c[i] = std::cos(angle) * f.attention_scaling;
      s[i] = std::sin(angle) * f.attention_scaling;
    }
  }
}

}  // namespace qlm
