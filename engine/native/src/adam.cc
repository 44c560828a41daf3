// Adam's update of one variable in one pass over its value, gradient and moments (tfjs spends a dozen
// passes and as many allocations on it), with tfjs' own float32 arithmetic in its order, so results
// are the same to the bit.
#include "context.h"

namespace retrain {

/**
 * Adam over [begin, end), in place: each element is read before it is written, so the cache lines that are read
 * are the ones written (new outputs would first be read from memory to be written: ~30% more traffic). Its own
 * function so the compiler knows the four arrays do not overlap and vectorises it.
 */
static void AdamRange(float* __restrict value, const float* __restrict gradient, float* __restrict m, float* __restrict v, const float* s,
                      size_t begin, size_t end) {
  const float beta1 = s[0], oneMinusBeta1 = s[1], beta2 = s[2], oneMinusBeta2 = s[3];
  const float correction1 = s[4], correction2 = s[5], epsilon = s[6], step = s[7];
  for (size_t i = begin; i < end; i++) {
    const float g = gradient[i];
    const float firstMoment = m[i] * beta1 + g * oneMinusBeta1;
    const float secondMoment = v[i] * beta2 + (g * g) * oneMinusBeta2;
    m[i] = firstMoment;
    v[i] = secondMoment;
    value[i] = ((firstMoment / correction1) / (std::sqrt(secondMoment / correction2) + epsilon)) * step + value[i];
  }
}

/**
 * adam(value, gradient, m, v, scalars) updates value, m and v in place; scalars is a Float32Array of
 * [beta1, 1 - beta1, beta2, 1 - beta2, 1 - beta1^t, 1 - beta2^t, epsilon, -learningRate].
 */
Napi::Value Adam(const Napi::CallbackInfo& info) {
  return Guarded(info, "Adam", [&] {
    if (info.Length() != 5) throw std::invalid_argument("expects 5 arguments");
    if (!info[0].IsTypedArray()) throw std::invalid_argument("value must be a Float32Array");
    size_t n = info[0].As<Napi::TypedArray>().ElementLength();
    float* value = FloatData(info[0], n, "value");
    const float* gradient = FloatData(info[1], n, "gradient");
    float* m = FloatData(info[2], n, "m");
    float* v = FloatData(info[3], n, "v");
    const float* scalars = FloatData(info[4], 8, "scalars");
    const float* arrays[] = {value, gradient, m, v};
    for (int a = 0; a < 4; a++)
      for (int b = a + 1; b < 4; b++)
        if (arrays[a] < arrays[b] + n && arrays[b] < arrays[a] + n) throw std::invalid_argument("value, gradient, m and v overlap");
    ParallelRanges(n, [&](size_t begin, size_t end) { AdamRange(value, gradient, m, v, scalars, begin, end); });
  });
}

}  // namespace retrain
