// What the pooling kernels share: a 2-D pooling's shapes as tfjs computed them, and its primitives.
#pragma once
#include "context.h"

namespace retrain {

/** A pooling's shapes from dims [N,H,W,C, OH,OW, KH,KW, SH,SW, PT,PL,PB,PR], in NHWC. */
struct PoolShape {
  dnnl::memory::desc src, dst;
  dnnl::memory::dims kernel, strides, padL, padR;
  std::string key;

  static PoolShape From(const Napi::Value& value);
  size_t SrcElements() const { return src.get_size() / sizeof(float); }
  size_t DstElements() const { return dst.get_size() / sizeof(float); }

  /** The forward pooling (training: it writes the workspace a max pooling's gradient reads), made once per shape. */
  std::pair<dnnl::primitive, const dnnl::pooling_forward::primitive_desc*> Forward(Context& context, dnnl::algorithm algorithm,
                                                                                  dnnl::prop_kind kind) const;
  std::pair<dnnl::primitive, const dnnl::pooling_backward::primitive_desc*> Backward(Context& context, dnnl::algorithm algorithm) const;
};

}  // namespace retrain
