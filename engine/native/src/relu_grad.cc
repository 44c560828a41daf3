// ReLU's gradient in one pass (a kernel of ours: tfjs composes it of step, cast and multiply).
#include "context.h"

namespace retrain {

/** reluGrad(dy, x, dx, elements): dx = dy where x > 0, else 0. */
Napi::Value ReluGrad(const Napi::CallbackInfo& info) {
  return ElementwisePair(info, "RetrainReluGrad", {"dy", "x", "dx"}, [](const float* dy, const float* x, float* dx, size_t begin, size_t end) {
    ReluGradientRange(dy, x, dx, begin, end, [](float gradient) { return gradient; });
  });
}

}  // namespace retrain
