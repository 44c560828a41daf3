// Add, Multiply and Sub of a tensor and another of its shape or a per-channel vector.
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

}  // namespace retrain
