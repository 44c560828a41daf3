// ReLU's gradient in one pass (a kernel of ours: tfjs composes it of step, cast and multiply).
#include "context.h"
#include <cstring>

namespace retrain {

/** Round to nearest even, as oneDNN's reorders do; NaN stays NaN. Both results computed, then a select: it vectorises. */
static inline uint16_t ToBfloat16(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  uint32_t rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
  uint32_t quietNaN = (bits >> 16) | 0x40u;
  return uint16_t((bits & 0x7fffffffu) > 0x7f800000u ? quietNaN : rounded);
}

// Both loads unconditional, so the select vectorises: a branch on the sign of y mispredicts half the time.
WIDE_VECTORS void MaskedGradient(const float* __restrict dy, const float* __restrict y, float* __restrict dz, size_t begin, size_t end) {
  for (size_t i = begin; i < end; i++) {
    float gradient = dy[i];
    dz[i] = y[i] > 0.f ? gradient : 0.f;
  }
}

WIDE_VECTORS void MaskedGradientBf16(const float* __restrict dy, const float* __restrict y, float* __restrict kept,
                                       uint16_t* __restrict narrow, size_t begin, size_t end) {
  if (!kept) {
    for (size_t i = begin; i < end; i++) {
      float gradient = dy[i];
      narrow[i] = ToBfloat16(y[i] > 0.f ? gradient : 0.f);
    }
    return;
  }
  for (size_t i = begin; i < end; i++) {
    float gradient = dy[i];
    float masked = y[i] > 0.f ? gradient : 0.f;
    kept[i] = masked;
    narrow[i] = ToBfloat16(masked);
  }
}

WIDE_VECTORS void MaskInPlace(float* __restrict dz, const float* __restrict y, size_t begin, size_t end) {
  for (size_t i = begin; i < end; i++) {
    float gradient = dz[i];
    dz[i] = y[i] > 0.f ? gradient : 0.f;
  }
}

WIDE_VECTORS void MaskInPlaceBf16(float* __restrict dz, const float* __restrict y, uint16_t* __restrict narrow, size_t begin, size_t end) {
  for (size_t i = begin; i < end; i++) {
    float gradient = dz[i];
    float masked = y[i] > 0.f ? gradient : 0.f;
    dz[i] = masked;
    narrow[i] = ToBfloat16(masked);
  }
}

/** reluGrad(dy, x, dx, elements): dx = dy where x > 0, else 0. */
Napi::Value ReluGrad(const Napi::CallbackInfo& info) {
  return ElementwisePair(info, "RetrainReluGrad", {"dy", "x", "dx"}, MaskedGradient);
}

}  // namespace retrain
