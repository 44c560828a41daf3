// MaxPoolGrad: dy routed back to the input position each window took its maximum from.
#include "context.h"
#include <sstream>

namespace retrain {

using dnnl::memory;

/** maxPoolGrad(dy, x, dx, dims [N,H,W,C, OH,OW, KH,KW, SH,SW, PT,PL,PB,PR]) */
Napi::Value MaxPoolGrad(const Napi::CallbackInfo& info) {
  return Guarded(info, "MaxPoolGrad", [&] {
    if (info.Length() != 4) throw std::invalid_argument("expects 4 arguments");
    const int32_t* d = IntData(info[3], 14, "dims");
    int64_t n = d[0], h = d[1], w = d[2], c = d[3], oh = d[4], ow = d[5];
    if (n == 0 || h == 0 || w == 0 || c == 0 || oh == 0 || ow == 0 || d[6] == 0 || d[7] == 0 || d[8] == 0 || d[9] == 0) {
      throw std::invalid_argument("dims has a zero size, window or stride");
    }
    float* dy = FloatData(info[0], size_t(n * oh * ow * c), "dy");
    float* x = FloatData(info[1], size_t(n * h * w * c), "x");
    float* dx = FloatData(info[2], size_t(n * h * w * c), "dx");
    Context& context = ContextOf(info.Env());
    memory::desc src({n, c, h, w}, memory::data_type::f32, memory::format_tag::nhwc);
    memory::desc dst({n, c, oh, ow}, memory::data_type::f32, memory::format_tag::nhwc);
    memory::dims kernel{d[6], d[7]}, strides{d[8], d[9]}, padL{d[10], d[11]}, padR{d[12], d[13]};
    // oneDNN's max-pooling gradient needs the forward pass's argmax workspace: run that forward pass again.
    auto forward = dnnl::pooling_forward::primitive_desc(
        dnnl::pooling_forward::desc(dnnl::prop_kind::forward_training, dnnl::algorithm::pooling_max, src, dst, strides, kernel, padL, padR),
        context.engine);
    auto backward = dnnl::pooling_backward::primitive_desc(
        dnnl::pooling_backward::desc(dnnl::algorithm::pooling_max, src, dst, strides, kernel, padL, padR), context.engine, forward);
    Borrowed borrowed(context.buffers);
    memory workspace = borrowed.Memory(forward.workspace_desc(), context.engine), pooled = borrowed.Memory(dst, context.engine);
    dnnl::pooling_forward(forward).execute(context.stream, {{DNNL_ARG_SRC, memory(src, context.engine, x)},
                                                            {DNNL_ARG_DST, pooled},
                                                            {DNNL_ARG_WORKSPACE, workspace}});
    dnnl::pooling_backward(backward).execute(context.stream, {{DNNL_ARG_DIFF_DST, memory(dst, context.engine, dy)},
                                                              {DNNL_ARG_WORKSPACE, workspace},
                                                              {DNNL_ARG_DIFF_SRC, memory(src, context.engine, dx)}});
    context.stream.wait();
  });
}

}  // namespace retrain
