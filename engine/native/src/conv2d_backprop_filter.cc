// Conv2DBackpropFilter: dW from x and dy, written in tfjs' HWIO layout.
#include "conv.h"

namespace retrain {

using dnnl::memory;

void BackwardWeights(Context& context, Borrowed& borrowed, const ConvGeometry& g, float* x, const memory& dz, float* dFilter,
                     const FilterArg& filter) {
  if (IsPointwise(g)) return PointwiseBackwardWeights(context, borrowed, g, x, dz, dFilter, filter);
  if (FitsPatchProduct(g)) return PatchBackwardWeights(context, borrowed, g, x, dz, dFilter, filter);
  const float* scale = filter.scale;
  auto hint = Forward(context, g, false, false).second;
  std::string key = "conv-bwd-weights:" + g.Key() + (context.bf16 ? "bf16" : "");
  auto [primitive, pd] = Cached<dnnl::convolution_backward_weights>(context, key, [&] {
    auto desc = dnnl::convolution_backward_weights::desc(dnnl::algorithm::convolution_direct, Nhwc(g.Src(), Operand(context)),
                                                         AnyLayout(g.Weights()), Nhwc(g.Dst(), Operand(context)), g.Strides(),
                                                         g.Dilations(), g.PadL(), g.PadR());
    return dnnl::convolution_backward_weights::primitive_desc(desc, PooledScratchpad(), context.engine, *hint);
  });
  memory user(g.Filter(), context.engine, dFilter);
  // A scale is applied by the reorder into HWIO (so one is made even where oneDNN could write HWIO itself).
  bool direct = pd->diff_weights_desc() == user.get_desc() && !scale;
  memory computed = direct ? user : borrowed.Memory(pd->diff_weights_desc(), context.engine);
  Execute(context, primitive, {{DNNL_ARG_SRC, TensorIn(context, borrowed, pd->src_desc(), g.Src(), x)},
                               {DNNL_ARG_DIFF_DST, dz},
                               {DNNL_ARG_DIFF_WEIGHTS, computed},
                               {DNNL_ARG_SCRATCHPAD, borrowed.Memory(pd->scratchpad_desc(), context.engine)}});
  if (direct) return;
  Reorder(context, borrowed, computed, user, scale ? Scaling{scale, g.o, 0, filter.scaleId} : Scaling{});
}

/** conv2dBackpropFilter(x, dy, dFilter, geometry); the geometry is the forward one. */
Napi::Value Conv2DBackpropFilter(const Napi::CallbackInfo& info) {
  return Guarded(info, "Conv2DBackpropFilter", [&] {
    if (info.Length() != 4) throw std::invalid_argument("expects 4 arguments");
    ConvGeometry given = ConvGeometry::From(info[3]);
    LiveTaps live = WithoutDeadTaps(given);
    const ConvGeometry& g = live.g;
    float* x = FloatData(info[0], g.SrcElements(), "x");
    float* dy = FloatData(info[1], g.DstElements(), "dy");
    float* dFilter = LiveGradient(FloatData(info[2], given.WeightElements(), "dFilter"), given, live);
    Context& context = ContextOf(info.Env());
    Borrowed borrowed(context.buffers);
    memory dz = Converted(context, borrowed, Nhwc(g.Dst(), Operand(context)), Nhwc(g.Dst()), dy);
    BackwardWeights(context, borrowed, g, x, dz, dFilter, FilterArg{});
  });
}

}  // namespace retrain
