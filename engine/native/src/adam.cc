// Adam's update of one variable in one pass over its value, gradient and moments (tfjs spends a dozen
// passes and as many allocations on it), with tfjs' own float32 arithmetic in its order, so results
// are the same to the bit.
#include "context.h"

#if defined(__x86_64__)
#define WIDEST_VECTORS __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define WIDEST_VECTORS
#endif

namespace retrain {

/**
 * Adam over [begin, end): its own function so the compiler knows the arrays do not overlap and vectorises it, cloned
 * for wider vectors where the CPU has them (the same IEEE operations in the same order: the same bits).
 */
WIDEST_VECTORS static void AdamRange(const float* __restrict value, const float* __restrict gradient, const float* __restrict m, const float* __restrict v,
                      float* __restrict newValue, float* __restrict newM, float* __restrict newV, const float* s, size_t begin,
                      size_t end) {
  const float beta1 = s[0], oneMinusBeta1 = s[1], beta2 = s[2], oneMinusBeta2 = s[3];
  const float correction1 = s[4], correction2 = s[5], epsilon = s[6], step = s[7];
  for (size_t i = begin; i < end; i++) {
    const float g = gradient[i];
    const float firstMoment = m[i] * beta1 + g * oneMinusBeta1;
    const float secondMoment = v[i] * beta2 + (g * g) * oneMinusBeta2;
    newM[i] = firstMoment;
    newV[i] = secondMoment;
    newValue[i] = ((firstMoment / correction1) / (std::sqrt(secondMoment / correction2) + epsilon)) * step + value[i];
  }
}

/**
 * adam(value, gradient, m, v, newValue, newM, newV, scalars): scalars is a Float32Array of
 * [beta1, 1 - beta1, beta2, 1 - beta2, 1 - beta1^t, 1 - beta2^t, epsilon, -learningRate].
 */
Napi::Value Adam(const Napi::CallbackInfo& info) {
  return Guarded(info, "Adam", [&] {
    if (info.Length() != 8) throw std::invalid_argument("expects 8 arguments");
    if (!info[0].IsTypedArray()) throw std::invalid_argument("value must be a Float32Array");
    size_t n = info[0].As<Napi::TypedArray>().ElementLength();
    const float* value = FloatData(info[0], n, "value");
    const float* gradient = FloatData(info[1], n, "gradient");
    const float* m = FloatData(info[2], n, "m");
    const float* v = FloatData(info[3], n, "v");
    float* newValue = FloatData(info[4], n, "newValue");
    float* newM = FloatData(info[5], n, "newM");
    float* newV = FloatData(info[6], n, "newV");
    const float* scalars = FloatData(info[7], 8, "scalars");
    ParallelRanges(n, [&](size_t begin, size_t end) { AdamRange(value, gradient, m, v, newValue, newM, newV, scalars, begin, end); });
  });
}

}  // namespace retrain
