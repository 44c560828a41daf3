// BatchNorm on batch statistics (a trainable BatchNorm in training) and its gradient through oneDNN:
// the composed tfjs ops cost more passes over the activations than the convolution before them.
#include "conv.h"
#include <sstream>

namespace retrain {

using dnnl::memory;

namespace {

const dnnl::normalization_flags kFlags = dnnl::normalization_flags::use_scale | dnnl::normalization_flags::use_shift;

struct BatchNormShape {
  int64_t n, h, w, c;
  float epsilon;
  memory::desc Data() const { return Nhwc({n, c, h, w}); }
  memory::desc Channels() const { return memory::desc({c}, memory::data_type::f32, memory::format_tag::x); }
  size_t Elements() const { return size_t(n * h * w * c); }
  std::string Key() const {
    std::ostringstream key;
    key << n << ',' << h << ',' << w << ',' << c << ',' << epsilon;
    return key.str();
  }
};

BatchNormShape ShapeOf(const Napi::Value& dims, const Napi::Value& epsilon) {
  const int32_t* d = IntData(dims, 4, "dims");
  if (d[0] == 0 || d[1] == 0 || d[2] == 0 || d[3] == 0) throw std::invalid_argument("dims has a zero size");
  float eps = epsilon.ToNumber().FloatValue();
  if (!(eps > 0.f)) throw std::invalid_argument("epsilon must be positive");
  return {d[0], d[1], d[2], d[3], eps};
}

std::pair<dnnl::primitive, const dnnl::batch_normalization_forward::primitive_desc*> ForwardOf(Context& context, const BatchNormShape& s) {
  return Cached<dnnl::batch_normalization_forward>(context, "bn-fwd:" + s.Key(), [&] {
    auto desc = dnnl::batch_normalization_forward::desc(dnnl::prop_kind::forward_training, s.Data(), s.epsilon, kFlags);
    return dnnl::batch_normalization_forward::primitive_desc(desc, PooledScratchpad(), context.engine);
  });
}

}  // namespace

/** batchNormTrain(x, gamma, beta, y, mean, variance, dims [N,H,W,C], epsilon): variance is the biased one. */
Napi::Value BatchNormTrain(const Napi::CallbackInfo& info) {
  return Guarded(info, "BatchNormTrain", [&] {
    if (info.Length() != 8) throw std::invalid_argument("expects 8 arguments");
    BatchNormShape s = ShapeOf(info[6], info[7]);
    size_t c = size_t(s.c);
    float* x = FloatData(info[0], s.Elements(), "x");
    float* gamma = FloatData(info[1], c, "gamma");
    float* beta = FloatData(info[2], c, "beta");
    float* y = FloatData(info[3], s.Elements(), "y");
    float* mean = FloatData(info[4], c, "mean");
    float* variance = FloatData(info[5], c, "variance");
    Context& context = ContextOf(info.Env());
    Borrowed borrowed(context.buffers);
    auto [primitive, pd] = ForwardOf(context, s);
    auto channels = [&](float* data) { return memory(s.Channels(), context.engine, data); };
    Execute(context, primitive, {{DNNL_ARG_SRC, memory(s.Data(), context.engine, x)},
                                 {DNNL_ARG_DST, memory(s.Data(), context.engine, y)},
                                 {DNNL_ARG_MEAN, channels(mean)},
                                 {DNNL_ARG_VARIANCE, channels(variance)},
                                 {DNNL_ARG_SCALE, channels(gamma)},
                                 {DNNL_ARG_SHIFT, channels(beta)},
                                 {DNNL_ARG_SCRATCHPAD, borrowed.Memory(pd->scratchpad_desc(), context.engine)}});
  });
}

/** batchNormGrad(dy, x, mean, variance, gamma, dx, dGamma, dBeta, dims [N,H,W,C], epsilon): through the batch statistics too. */
Napi::Value BatchNormGrad(const Napi::CallbackInfo& info) {
  return Guarded(info, "BatchNormGrad", [&] {
    if (info.Length() != 10) throw std::invalid_argument("expects 10 arguments");
    BatchNormShape s = ShapeOf(info[8], info[9]);
    size_t c = size_t(s.c);
    float* dy = FloatData(info[0], s.Elements(), "dy");
    float* x = FloatData(info[1], s.Elements(), "x");
    float* mean = FloatData(info[2], c, "mean");
    float* variance = FloatData(info[3], c, "variance");
    float* gamma = FloatData(info[4], c, "gamma");
    float* dx = FloatData(info[5], s.Elements(), "dx");
    float* dGamma = FloatData(info[6], c, "dGamma");
    float* dBeta = FloatData(info[7], c, "dBeta");
    Context& context = ContextOf(info.Env());
    Borrowed borrowed(context.buffers);
    auto hint = ForwardOf(context, s).second;
    auto [primitive, pd] = Cached<dnnl::batch_normalization_backward>(context, "bn-bwd:" + s.Key(), [&] {
      auto desc = dnnl::batch_normalization_backward::desc(dnnl::prop_kind::backward, s.Data(), s.Data(), s.epsilon, kFlags);
      return dnnl::batch_normalization_backward::primitive_desc(desc, PooledScratchpad(), context.engine, *hint);
    });
    auto channels = [&](float* data) { return memory(s.Channels(), context.engine, data); };
    Execute(context, primitive, {{DNNL_ARG_SRC, memory(s.Data(), context.engine, x)},
                                 {DNNL_ARG_DIFF_DST, memory(s.Data(), context.engine, dy)},
                                 {DNNL_ARG_MEAN, channels(mean)},
                                 {DNNL_ARG_VARIANCE, channels(variance)},
                                 {DNNL_ARG_SCALE, channels(gamma)},
                                 // oneDNN 2.6 will not run without a shift here, though the gradient does not read it.
                                 {DNNL_ARG_SHIFT, channels(gamma)},
                                 {DNNL_ARG_DIFF_SRC, memory(s.Data(), context.engine, dx)},
                                 {DNNL_ARG_DIFF_SCALE, channels(dGamma)},
                                 {DNNL_ARG_DIFF_SHIFT, channels(dBeta)},
                                 {DNNL_ARG_SCRATCHPAD, borrowed.Memory(pd->scratchpad_desc(), context.engine)}});
  });
}

}  // namespace retrain
