// Conv2DBackpropInput: dx from dy and the filter.
#include "conv.h"

namespace retrain {

using dnnl::memory;

void BackwardData(Context& context, Borrowed& borrowed, const ConvGeometry& g, const memory& dz, const FilterArg& filter, float* dx,
                  bool accumulate) {
  if (IsPointwise(g)) return PointwiseBackwardData(context, borrowed, g, dz, filter, dx, accumulate);
  if (accumulate) {
    // A 1x1 sums in its product or its scatter (a bottleneck's conv1, a downsample); others into a buffer, then added.
    auto* own = static_cast<float*>(borrowed.Memory(Nhwc(g.Src()), context.engine).get_data_handle());
    BackwardData(context, borrowed, g, dz, filter, own, false);
    ParallelRanges(g.SrcElements(), [&](size_t begin, size_t end) {
      for (size_t i = begin; i < end; i++) dx[i] += own[i];
    });
    return;
  }
  if (RunsAsProduct(context, g, filter)) return PatchBackwardData(context, borrowed, g, dz, filter, dx);
  auto hint = Forward(context, g, false, false).second;
  std::string key = "conv-bwd-data:" + g.Key() + (context.bf16 ? "bf16" : "");
  auto [primitive, pd] = Cached<dnnl::convolution_backward_data>(context, key, [&] {
    auto desc = dnnl::convolution_backward_data::desc(dnnl::algorithm::convolution_direct, Nhwc(g.Src()),
                                                      AnyLayout(g.Weights(), Operand(context)), Nhwc(g.Dst(), Operand(context)),
                                                      g.Strides(), g.Dilations(), g.PadL(), g.PadR());
    return dnnl::convolution_backward_data::primitive_desc(desc, PooledScratchpad(), context.engine, *hint);
  });
  memory weights = FilterAs(context, borrowed, pd->weights_desc(), g.Filter(), filter, g.o, "bwd-data:" + g.Key());
  Execute(context, primitive, {{DNNL_ARG_DIFF_DST, dz},
                               {DNNL_ARG_WEIGHTS, weights},
                               {DNNL_ARG_DIFF_SRC, memory(pd->diff_src_desc(), context.engine, dx)},
                               {DNNL_ARG_SCRATCHPAD, borrowed.Memory(pd->scratchpad_desc(), context.engine)}});
}

/** conv2dBackpropInput(dy, filter, dx, geometry, filterId); the geometry is the forward one. */
Napi::Value Conv2DBackpropInput(const Napi::CallbackInfo& info) {
  return Guarded(info, "Conv2DBackpropInput", [&] {
    if (info.Length() != 5) throw std::invalid_argument("expects 5 arguments");
    ConvGeometry given = ConvGeometry::From(info[3]);
    LiveTaps live = WithoutDeadTaps(given);
    const ConvGeometry& g = live.g;
    float* dy = FloatData(info[0], g.DstElements(), "dy");
    float* filter = FloatData(info[1], given.WeightElements(), "filter") + live.offset;
    float* dx = FloatData(info[2], g.SrcElements(), "dx");
    Context& context = ContextOf(info.Env());
    Borrowed borrowed(context.buffers);
    memory dz = Converted(context, borrowed, Nhwc(g.Dst(), Operand(context)), Nhwc(g.Dst()), dy);
    BackwardData(context, borrowed, g, dz, FilterArg{filter, info[4].ToNumber().Int64Value()}, dx);
  });
}

}  // namespace retrain
