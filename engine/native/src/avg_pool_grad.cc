// AvgPoolGrad: each window's dy spread evenly over the whole window, padding included, as tfjs does.
#include "pooling.h"

namespace retrain {

using dnnl::memory;

/** avgPoolGrad(dy, dx, dims) */
Napi::Value AvgPoolGrad(const Napi::CallbackInfo& info) {
  return Guarded(info, "AvgPoolGrad", [&] {
    if (info.Length() != 3) throw std::invalid_argument("expects 3 arguments");
    PoolShape shape = PoolShape::From(info[2]);
    float* dy = FloatData(info[0], shape.DstElements(), "dy");
    float* dx = FloatData(info[1], shape.SrcElements(), "dx");
    Context& context = ContextOf(info.Env());
    auto backward = shape.Backward(context, dnnl::algorithm::pooling_avg_include_padding).first;
    Execute(context, backward, {{DNNL_ARG_DIFF_DST, memory(shape.dst, context.engine, dy)},
                                {DNNL_ARG_DIFF_SRC, memory(shape.src, context.engine, dx)}});
  });
}

}  // namespace retrain
