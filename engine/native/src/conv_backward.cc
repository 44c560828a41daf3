// A convolution's whole backward pass in one call: ReLU's gradient (when ReLU followed it), converted
// once into the type the kernels read, then the input's and the filter's gradients from that one copy.
// Apart, the ReLU gradient is a float32 tensor of its own and each gradient kernel converts it again.
#include "conv.h"
#include <cstring>

namespace retrain {

using dnnl::memory;

/** Round to nearest even, as oneDNN's reorders do; NaN stays NaN. Both results computed, then a select: it vectorises. */
static inline uint16_t ToBfloat16(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  uint32_t rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
  uint32_t quietNaN = (bits >> 16) | 0x40u;
  return uint16_t((bits & 0x7fffffffu) > 0x7f800000u ? quietNaN : rounded);
}

/**
 * dz = dy * scale[channel] over [begin, end) of an NHWC tensor, zero where y <= 0 when y is given; each
 * stretch within one pixel is a loop of its own, so the compiler vectorises it.
 */
template <typename Out, typename Store>
static void ScaledGradientRange(const float* __restrict dy, const float* __restrict y, const float* __restrict scale, size_t channels,
                                Out* __restrict dz, size_t begin, size_t end, Store store) {
  for (size_t i = begin; i < end;) {
    size_t first = i % channels, count = std::min(end - i, channels - first);
    const float* s = scale + first;
    if (y) {
      for (size_t k = 0; k < count; k++) {
        float gradient = dy[i + k] * s[k];  // computed unconditionally: a select, not a branch
        dz[i + k] = store(y[i + k] > 0.f ? gradient : 0.f);
      }
    } else {
      for (size_t k = 0; k < count; k++) dz[i + k] = store(dy[i + k] * s[k]);
    }
    i += count;
  }
}

/**
 * The gradient at the convolution's output, in the kernels' type: dy through ReLU when y is given, times
 * the filter's scale per output channel when there is one (the filter was scaled: so is what it passes back).
 */
static memory OutputGradient(Context& context, Borrowed& borrowed, const ConvGeometry& g, float* dy, const float* y, const float* scale) {
  memory::desc wanted = Nhwc(g.Dst(), Operand(context));
  if (!y && !scale) return Converted(context, borrowed, wanted, Nhwc(g.Dst()), dy);
  memory dz = borrowed.Memory(wanted, context.engine);
  void* out = dz.get_data_handle();
  auto fill = [&](auto* typed, auto store) {
    ParallelRanges(g.DstElements(), [&](size_t begin, size_t end) {
      if (scale) ScaledGradientRange(dy, y, scale, size_t(g.o), typed, begin, end, store);
      else ReluGradientRange(dy, y, typed, begin, end, store);
    });
  };
  // A lambda inlines into the loop; a function pointer did not, and kept it from vectorising.
  if (context.bf16) fill(static_cast<uint16_t*>(out), [](float value) { return ToBfloat16(value); });
  else fill(static_cast<float*>(out), [](float value) { return value; });
  return dz;
}

/**
 * convBackward(dy, y | null, x, filter, dx | null, dFilter | null, geometry, filterId, scale | null); y is the
 * ReLU's output; with a scale the forward pass used filter * scale, and dFilter is the gradient of filter.
 */
Napi::Value ConvBackward(const Napi::CallbackInfo& info) {
  return Guarded(info, "RetrainConvBackward", [&] {
    if (info.Length() != 9) throw std::invalid_argument("expects 9 arguments");
    ConvGeometry g = ConvGeometry::From(info[6]);
    float* dy = FloatData(info[0], g.DstElements(), "dy");
    const float* y = info[1].IsNull() ? nullptr : FloatData(info[1], g.DstElements(), "y");
    float* x = FloatData(info[2], g.SrcElements(), "x");
    float* filter = FloatData(info[3], g.WeightElements(), "filter");
    float* dx = info[4].IsNull() ? nullptr : FloatData(info[4], g.SrcElements(), "dx");
    float* dFilter = info[5].IsNull() ? nullptr : FloatData(info[5], g.WeightElements(), "dFilter");
    const float* scale = info[8].IsNull() ? nullptr : FloatData(info[8], size_t(g.o), "scale");
    Context& context = ContextOf(info.Env());
    Borrowed borrowed(context.buffers);
    memory dz = OutputGradient(context, borrowed, g, dy, y, scale);
    // A scaled filter is a trained one, new every step: its reorder is not worth keeping.
    if (dx) BackwardData(context, borrowed, g, dz, filter, dx, scale ? 0 : info[7].ToNumber().Int64Value());
    if (dFilter) BackwardWeights(context, borrowed, g, x, dz, dFilter);
  });
}

}  // namespace retrain
