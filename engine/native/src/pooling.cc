// The pooling kernels' shared shapes and primitives.
#include "pooling.h"
#include <sstream>

namespace retrain {

using dnnl::memory;

PoolShape PoolShape::From(const Napi::Value& value) {
  const int32_t* d = IntData(value, 14, "dims");
  int64_t n = d[0], h = d[1], w = d[2], c = d[3], oh = d[4], ow = d[5];
  if (n == 0 || h == 0 || w == 0 || c == 0 || oh == 0 || ow == 0 || d[6] == 0 || d[7] == 0 || d[8] == 0 || d[9] == 0) {
    throw std::invalid_argument("dims has a zero size, window or stride");
  }
  std::ostringstream key;
  for (int i = 0; i < 14; i++) key << d[i] << ',';
  return {memory::desc({n, c, h, w}, memory::data_type::f32, memory::format_tag::nhwc),
          memory::desc({n, c, oh, ow}, memory::data_type::f32, memory::format_tag::nhwc),
          {d[6], d[7]},
          {d[8], d[9]},
          {d[10], d[11]},
          {d[12], d[13]},
          key.str()};
}

static dnnl::pooling_forward::primitive_desc ForwardDesc(const PoolShape& s, const dnnl::engine& engine, dnnl::algorithm algorithm,
                                                        dnnl::prop_kind kind) {
  return {{kind, algorithm, s.src, s.dst, s.strides, s.kernel, s.padL, s.padR}, engine};
}

std::pair<dnnl::primitive, const dnnl::pooling_forward::primitive_desc*> PoolShape::Forward(Context& context, dnnl::algorithm algorithm,
                                                                                           dnnl::prop_kind kind) const {
  std::string id = "pool-fwd:" + std::to_string(int(algorithm)) + ':' + std::to_string(int(kind)) + ':' + key;
  return Cached<dnnl::pooling_forward>(context, id, [&] { return ForwardDesc(*this, context.engine, algorithm, kind); });
}

std::pair<dnnl::primitive, const dnnl::pooling_backward::primitive_desc*> PoolShape::Backward(Context& context,
                                                                                             dnnl::algorithm algorithm) const {
  std::string id = "pool-bwd:" + std::to_string(int(algorithm)) + ':' + key;
  return Cached<dnnl::pooling_backward>(context, id, [&] {
    auto hint = ForwardDesc(*this, context.engine, algorithm, dnnl::prop_kind::forward_training);
    return dnnl::pooling_backward::primitive_desc({algorithm, src, dst, strides, kernel, padL, padR}, context.engine, hint);
  });
}

}  // namespace retrain
