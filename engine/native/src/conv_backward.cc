// A convolution's whole backward pass in one call: ReLU's gradient (when ReLU followed it), converted
// once into the type the kernels read, then the input's and the filter's gradients from that one copy.
// Apart, the ReLU gradient is a float32 tensor of its own and each gradient kernel converts it again.
#include "conv.h"
#include <iterator>

namespace retrain {

using dnnl::memory;

/**
 * The gradient at the convolution's output, in the kernels' type: dy through ReLU when y is given. `kept`, when given, gets
 * that gradient in float32 too (a residual sum's other operand takes it), written in the same pass. With `dyWritable` (no
 * other tensor holds dy's data, and nothing reads dy after this call) `kept` is dy itself or absent, and a float32
 * gradient is written over dy too.
 */
static memory OutputGradient(Context& context, Borrowed& borrowed, const ConvGeometry& g, float* dy, const float* y, float* kept,
                             bool dyWritable) {
  memory::desc wanted = Nhwc(g.Dst(), Operand(context));
  if (!y) return Converted(context, borrowed, wanted, Nhwc(g.Dst()), dy);
  if (kept && (kept == dy) != dyWritable) throw std::invalid_argument("dz may be dy only when dy is writable, and must be then");
  const size_t n = g.DstElements();
  if (!context.bf16) {
    if (dyWritable) {
      ParallelRanges(n, [&](size_t begin, size_t end) { MaskInPlace(dy, y, begin, end); });
      return memory(wanted, context.engine, dy);
    }
    memory dz = kept ? memory(wanted, context.engine, kept) : borrowed.Memory(wanted, context.engine);
    auto* out = static_cast<float*>(dz.get_data_handle());
    ParallelRanges(n, [&](size_t begin, size_t end) { MaskedGradient(dy, y, out, begin, end); });
    return dz;
  }
  memory dz = borrowed.Memory(wanted, context.engine);
  auto* narrow = static_cast<uint16_t*>(dz.get_data_handle());
  if (kept == dy) {
    ParallelRanges(n, [&](size_t begin, size_t end) { MaskInPlaceBf16(dy, y, narrow, begin, end); });
    return dz;
  }
  ParallelRanges(n, [&](size_t begin, size_t end) { MaskedGradientBf16(dy, y, kept, narrow, begin, end); });
  return dz;
}

/**
 * convBackward(dy, y | null, x, filter, dx | null, dFilter | null, geometry, filterId, scale | null, scaleId, dz | null,
 * accumulate, dyWritable); y is the ReLU's output, and dz (given only with y) gets the gradient at the ReLU's input; with
 * `accumulate` the input gradient is added to what dx holds; with `dyWritable` dy's data may be written over (dz may then
 * be dy itself). With a scale the forward pass used filter * scale: dx goes back through
 * filter * scale (the forward pass's own bfloat16 copy), and dFilter, the gradient of filter, is the scaled filter's times
 * the scale. Returns the taps whose gradient it wrote, Int32Array [top, rows, left, columns], where the others read only
 * padding (their gradient is 0).
 */
Napi::Value ConvBackward(const Napi::CallbackInfo& info) {
  Napi::Value liveTaps = info.Env().Null();
  Guarded(info, "RetrainConvBackward", [&] {
    if (info.Length() != 13) throw std::invalid_argument("expects 13 arguments");
    ConvGeometry given = ConvGeometry::From(info[6]);
    LiveTaps live = WithoutDeadTaps(given);
    const ConvGeometry& g = live.g;
    float* dy = FloatData(info[0], g.DstElements(), "dy");
    const float* y = info[1].IsNull() ? nullptr : FloatData(info[1], g.DstElements(), "y");
    float* x = FloatData(info[2], g.SrcElements(), "x");
    float* filter = FloatData(info[3], given.WeightElements(), "filter") + live.offset;
    float* dx = info[4].IsNull() ? nullptr : FloatData(info[4], g.SrcElements(), "dx");
    float* dFilter = info[5].IsNull() ? nullptr : LiveGradient(FloatData(info[5], given.WeightElements(), "dFilter"), given, live);
    const float* scale = info[8].IsNull() ? nullptr : FloatData(info[8], size_t(g.o), "scale");
    float* kept = info[10].IsNull() ? nullptr : FloatData(info[10], g.DstElements(), "dz");
    if (kept && !y) throw std::invalid_argument("dz needs y");
    Context& context = ContextOf(info.Env());
    Borrowed borrowed(context.buffers);
    memory dz = OutputGradient(context, borrowed, g, dy, y, kept, info[12].ToBoolean());
    FilterArg filterArg{filter, info[7].ToNumber().Int64Value(), scale, info[9].ToNumber().Int64Value()};
    if (dx) BackwardData(context, borrowed, g, dz, filterArg, dx, info[11].ToBoolean());
    if (dFilter) BackwardWeights(context, borrowed, g, x, dz, dFilter, filterArg);
    if (dFilter && live.cropped) {
      Napi::Int32Array box = Napi::Int32Array::New(info.Env(), 4);
      int32_t fields[] = {int32_t(live.top), int32_t(g.kh), int32_t(live.left), int32_t(g.kw)};
      std::copy(std::begin(fields), std::end(fields), box.Data());
      liveTaps = box;
    }
  });
  return liveTaps;
}

}  // namespace retrain
