// Multiply, Add and Sub of a tensor and another of its shape or a per-channel vector, and ReLU's gradient.
#include "context.h"

namespace retrain {

/** binary(kind 0 add | 1 mul | 2 sub, a, b, out, rows, channels, bRows): a is [rows, channels], b [bRows, channels] with bRows 1 or rows. */
Napi::Value Binary(const Napi::CallbackInfo& info) {
  return Guarded(info, "Binary", [&] {
    if (info.Length() != 7) throw std::invalid_argument("expects 7 arguments");
    int64_t kind = info[0].ToNumber().Int64Value();
    int64_t rows = info[4].ToNumber().Int64Value(), channels = info[5].ToNumber().Int64Value(), bRows = info[6].ToNumber().Int64Value();
    if (kind < 0 || kind > 2 || rows <= 0 || channels <= 0 || (bRows != 1 && bRows != rows)) throw std::invalid_argument("bad kind or shape");
    const float* a = FloatData(info[1], size_t(rows * channels), "a");
    const float* b = FloatData(info[2], size_t(bRows * channels), "b");
    float* out = FloatData(info[3], size_t(rows * channels), "out");
    // Memory-bound: a plain loop over rows on every core beats oneDNN 2.6's binary primitive, which is
    // slow with a broadcast second operand.
    int64_t bStride = bRows == 1 ? 0 : channels;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
      const float* x = a + r * channels;
      const float* y = b + r * bStride;
      float* z = out + r * channels;
      if (kind == 0) for (int64_t c = 0; c < channels; c++) z[c] = x[c] + y[c];
      else if (kind == 1) for (int64_t c = 0; c < channels; c++) z[c] = x[c] * y[c];
      else for (int64_t c = 0; c < channels; c++) z[c] = x[c] - y[c];
    }
  });
}

static void AddReluRange(const float* __restrict a, const float* __restrict b, float* __restrict out, size_t begin, size_t end) {
  for (size_t i = begin; i < end; i++) {
    float sum = a[i] + b[i];
    out[i] = sum > 0.f ? sum : 0.f;
  }
}

/** (first, second, out, elements) of one length, `range` run over them on every core. */
template <typename Range>
static Napi::Value ElementwisePair(const Napi::CallbackInfo& info, const char* kernel, const char* const (&names)[3], Range range) {
  return Guarded(info, kernel, [&] {
    if (info.Length() != 4) throw std::invalid_argument("expects 4 arguments");
    int64_t elements = info[3].ToNumber().Int64Value();
    if (elements <= 0) throw std::invalid_argument("elements must be positive");
    const float* first = FloatData(info[0], size_t(elements), names[0]);
    const float* second = FloatData(info[1], size_t(elements), names[1]);
    float* out = FloatData(info[2], size_t(elements), names[2]);
    ParallelRanges(size_t(elements), [&](size_t begin, size_t end) { range(first, second, out, begin, end); });
  });
}

/** reluGrad(dy, x, dx, elements): dx = dy where x > 0, else 0. */
Napi::Value ReluGrad(const Napi::CallbackInfo& info) {
  return ElementwisePair(info, "ReluGrad", {"dy", "x", "dx"}, [](const float* dy, const float* x, float* dx, size_t begin, size_t end) {
    ReluGradientRange(dy, x, dx, begin, end, [](float gradient) { return gradient; });
  });
}

/** addRelu(a, b, out, elements): out = max(a + b, 0), the residual sum and its ReLU in one pass. */
Napi::Value AddRelu(const Napi::CallbackInfo& info) { return ElementwisePair(info, "RetrainAddRelu", {"a", "b", "out"}, AddReluRange); }

}  // namespace retrain
