// A convolution's whole backward pass in one call: ReLU's gradient (when ReLU followed it), converted
// once into the type the kernels read, then the input's and the filter's gradients from that one copy.
// Apart, the ReLU gradient is a float32 tensor of its own and each gradient kernel converts it again.
#include "conv.h"
#include <cstring>

namespace retrain {

using dnnl::memory;

/** Round to nearest even, as oneDNN's reorders do; NaN stays NaN. */
static inline uint16_t ToBfloat16(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  uint32_t rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
  return (bits & 0x7fffffffu) > 0x7f800000u ? uint16_t((bits >> 16) | 0x40u) : uint16_t(rounded);
}

static void ReluGradBfloat16(const float* __restrict dy, const float* __restrict y, uint16_t* __restrict dz, size_t begin, size_t end) {
  for (size_t i = begin; i < end; i++) {
    float gradient = dy[i];
    dz[i] = ToBfloat16(y[i] > 0.f ? gradient : 0.f);
  }
}

/** The gradient at the convolution's output, in the kernels' type: dy through ReLU when y is given, else dy itself. */
static memory OutputGradient(Context& context, Borrowed& borrowed, const ConvGeometry& g, float* dy, const float* y) {
  memory::desc wanted = Nhwc(g.Dst(), Operand(context));
  if (!y) return Converted(context, borrowed, wanted, Nhwc(g.Dst()), dy);
  memory dz = borrowed.Memory(wanted, context.engine);
  void* out = dz.get_data_handle();
  ParallelRanges(g.DstElements(), [&](size_t begin, size_t end) {
    if (context.bf16) ReluGradBfloat16(dy, y, static_cast<uint16_t*>(out), begin, end);
    else ReluGradRange(dy, y, static_cast<float*>(out), begin, end);
  });
  return dz;
}

/** convBackward(dy, y | null, x, filter, dx | null, dFilter | null, geometry, filterId); y is the ReLU's output. */
Napi::Value ConvBackward(const Napi::CallbackInfo& info) {
  return Guarded(info, "RetrainConvBackward", [&] {
    if (info.Length() != 8) throw std::invalid_argument("expects 8 arguments");
    ConvGeometry g = ConvGeometry::From(info[6]);
    float* dy = FloatData(info[0], g.DstElements(), "dy");
    const float* y = info[1].IsNull() ? nullptr : FloatData(info[1], g.DstElements(), "y");
    float* x = FloatData(info[2], g.SrcElements(), "x");
    float* filter = FloatData(info[3], g.WeightElements(), "filter");
    float* dx = info[4].IsNull() ? nullptr : FloatData(info[4], g.SrcElements(), "dx");
    float* dFilter = info[5].IsNull() ? nullptr : FloatData(info[5], g.WeightElements(), "dFilter");
    Context& context = ContextOf(info.Env());
    Borrowed borrowed(context.buffers);
    memory dz = OutputGradient(context, borrowed, g, dy, y);
    if (dx) BackwardData(context, borrowed, g, dz, filter, dx, info[7].ToNumber().Int64Value());
    if (dFilter) BackwardWeights(context, borrowed, g, x, dz, dFilter);
    context.stream.wait();
  });
}

}  // namespace retrain
