// MaxPoolGrad (dy routed back to the input position each window took its maximum from) and AvgPoolGrad.
#include "context.h"

namespace retrain {

using dnnl::memory;

/** A pooling's shapes from dims [N,H,W,C, OH,OW, KH,KW, SH,SW, PT,PL,PB,PR]. */
struct PoolShape {
  memory::desc src, dst;
  memory::dims kernel, strides, padL, padR;

  static PoolShape From(const Napi::Value& value) {
    const int32_t* d = IntData(value, 14, "dims");
    int64_t n = d[0], h = d[1], w = d[2], c = d[3], oh = d[4], ow = d[5];
    if (n == 0 || h == 0 || w == 0 || c == 0 || oh == 0 || ow == 0 || d[6] == 0 || d[7] == 0 || d[8] == 0 || d[9] == 0) {
      throw std::invalid_argument("dims has a zero size, window or stride");
    }
    return {memory::desc({n, c, h, w}, memory::data_type::f32, memory::format_tag::nhwc),
            memory::desc({n, c, oh, ow}, memory::data_type::f32, memory::format_tag::nhwc),
            {d[6], d[7]},
            {d[8], d[9]},
            {d[10], d[11]},
            {d[12], d[13]}};
  }
  size_t SrcElements() const { return src.get_size() / sizeof(float); }
  size_t DstElements() const { return dst.get_size() / sizeof(float); }
  dnnl::pooling_forward::primitive_desc Forward(dnnl::algorithm algorithm, const dnnl::engine& engine) const {
    return {{dnnl::prop_kind::forward_training, algorithm, src, dst, strides, kernel, padL, padR}, engine};
  }
  dnnl::pooling_backward::primitive_desc Backward(dnnl::algorithm algorithm, const dnnl::engine& engine) const {
    return {{algorithm, src, dst, strides, kernel, padL, padR}, engine, Forward(algorithm, engine)};
  }
};

/** maxPoolGrad(dy, x, dx, dims) */
Napi::Value MaxPoolGrad(const Napi::CallbackInfo& info) {
  return Guarded(info, "MaxPoolGrad", [&] {
    if (info.Length() != 4) throw std::invalid_argument("expects 4 arguments");
    PoolShape shape = PoolShape::From(info[3]);
    float* dy = FloatData(info[0], shape.DstElements(), "dy");
    float* x = FloatData(info[1], shape.SrcElements(), "x");
    float* dx = FloatData(info[2], shape.SrcElements(), "dx");
    Context& context = ContextOf(info.Env());
    // oneDNN's max-pooling gradient needs the forward pass's argmax workspace: run that forward pass again.
    auto forward = shape.Forward(dnnl::algorithm::pooling_max, context.engine);
    auto backward = shape.Backward(dnnl::algorithm::pooling_max, context.engine);
    Borrowed borrowed(context.buffers);
    memory workspace = borrowed.Memory(forward.workspace_desc(), context.engine), pooled = borrowed.Memory(shape.dst, context.engine);
    Execute(context, dnnl::pooling_forward(forward), {{DNNL_ARG_SRC, memory(shape.src, context.engine, x)},
                                                      {DNNL_ARG_DST, pooled},
                                                      {DNNL_ARG_WORKSPACE, workspace}});
    Execute(context, dnnl::pooling_backward(backward), {{DNNL_ARG_DIFF_DST, memory(shape.dst, context.engine, dy)},
                                                        {DNNL_ARG_WORKSPACE, workspace},
                                                        {DNNL_ARG_DIFF_SRC, memory(shape.src, context.engine, dx)}});
  });
}

/** avgPoolGrad(dy, dx, dims): each window's dy spread evenly over the whole window, padding included, as tfjs does. */
Napi::Value AvgPoolGrad(const Napi::CallbackInfo& info) {
  return Guarded(info, "AvgPoolGrad", [&] {
    if (info.Length() != 3) throw std::invalid_argument("expects 3 arguments");
    PoolShape shape = PoolShape::From(info[2]);
    float* dy = FloatData(info[0], shape.DstElements(), "dy");
    float* dx = FloatData(info[1], shape.SrcElements(), "dx");
    Context& context = ContextOf(info.Env());
    auto backward = shape.Backward(dnnl::algorithm::pooling_avg_include_padding, context.engine);
    Execute(context, dnnl::pooling_backward(backward), {{DNNL_ARG_DIFF_DST, memory(shape.dst, context.engine, dy)},
                                                        {DNNL_ARG_DIFF_SRC, memory(shape.src, context.engine, dx)}});
  });
}

}  // namespace retrain
