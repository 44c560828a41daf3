// A residual block's end in one pass (a kernel of ours): the sum of its branches and the ReLU after it.
#include "context.h"

namespace retrain {

WIDE_VECTORS static void AddReluRange(const float* __restrict a, const float* __restrict b, float* __restrict out, size_t begin, size_t end) {
  for (size_t i = begin; i < end; i++) {
    float sum = a[i] + b[i];
    out[i] = sum > 0.f ? sum : 0.f;
  }
}

/** addRelu(a, b, out, elements): out = max(a + b, 0). */
Napi::Value AddRelu(const Napi::CallbackInfo& info) { return ElementwisePair(info, "RetrainAddRelu", {"a", "b", "out"}, AddReluRange); }

}  // namespace retrain
