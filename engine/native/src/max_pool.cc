// MaxPool and MaxPoolGrad: the forward pass keeps, when a gradient will follow, where each window took
// its maximum from (oneDNN's workspace, one byte per output), so the gradient routes dy there without
// pooling again.
#include "pooling.h"

namespace retrain {

using dnnl::memory;

/** The bytes of a Uint8Array, checked to hold exactly `bytes`. */
static uint8_t* ByteData(const Napi::Value& value, size_t bytes, const char* what) {
  if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array ||
      value.As<Napi::Uint8Array>().ElementLength() != bytes) {
    throw std::invalid_argument(std::string(what) + " must be a Uint8Array of " + std::to_string(bytes) + " bytes");
  }
  return value.As<Napi::Uint8Array>().Data();
}

static const dnnl::pooling_forward::primitive_desc& TrainingDesc(Context& context, const PoolShape& shape) {
  return *shape.Forward(context, dnnl::algorithm::pooling_max, dnnl::prop_kind::forward_training).second;
}

/** maxPoolWorkspaceBytes(dims): the size of the workspace maxPool writes for maxPoolGrad. */
Napi::Value MaxPoolWorkspaceBytes(const Napi::CallbackInfo& info) {
  size_t bytes = 0;
  Guarded(info, "MaxPool", [&] {
    if (info.Length() != 1) throw std::invalid_argument("expects 1 argument");
    bytes = TrainingDesc(ContextOf(info.Env()), PoolShape::From(info[0])).workspace_desc().get_size();
  });
  return Napi::Number::New(info.Env(), double(bytes));
}

/** maxPool(x, y, workspace | null, dims): with a workspace, it records the argmax of every window there. */
Napi::Value MaxPool(const Napi::CallbackInfo& info) {
  return Guarded(info, "MaxPool", [&] {
    if (info.Length() != 4) throw std::invalid_argument("expects 4 arguments");
    PoolShape shape = PoolShape::From(info[3]);
    float* x = FloatData(info[0], shape.SrcElements(), "x");
    float* y = FloatData(info[1], shape.DstElements(), "y");
    Context& context = ContextOf(info.Env());
    bool training = !info[2].IsNull();
    auto kind = training ? dnnl::prop_kind::forward_training : dnnl::prop_kind::forward_inference;
    auto [primitive, pd] = shape.Forward(context, dnnl::algorithm::pooling_max, kind);
    std::unordered_map<int, memory> args{{DNNL_ARG_SRC, memory(shape.src, context.engine, x)}, {DNNL_ARG_DST, memory(shape.dst, context.engine, y)}};
    if (training) {
      memory::desc workspace = pd->workspace_desc();
      args.emplace(DNNL_ARG_WORKSPACE, memory(workspace, context.engine, ByteData(info[2], workspace.get_size(), "workspace")));
    }
    Execute(context, primitive, args);
  });
}

/** maxPoolGrad(dy, x, dx, dims, workspace | null): without maxPool's workspace, the forward pass runs again to make one. */
Napi::Value MaxPoolGrad(const Napi::CallbackInfo& info) {
  return Guarded(info, "MaxPoolGrad", [&] {
    if (info.Length() != 5) throw std::invalid_argument("expects 5 arguments");
    PoolShape shape = PoolShape::From(info[3]);
    float* dy = FloatData(info[0], shape.DstElements(), "dy");
    float* x = FloatData(info[1], shape.SrcElements(), "x");
    float* dx = FloatData(info[2], shape.SrcElements(), "dx");
    Context& context = ContextOf(info.Env());
    const auto& forward = TrainingDesc(context, shape);
    Borrowed borrowed(context.buffers);
    memory workspace;
    if (info[4].IsNull()) {
      workspace = borrowed.Memory(forward.workspace_desc(), context.engine);
      memory pooled = borrowed.Memory(shape.dst, context.engine);
      auto primitive = shape.Forward(context, dnnl::algorithm::pooling_max, dnnl::prop_kind::forward_training).first;
      Execute(context, primitive, {{DNNL_ARG_SRC, memory(shape.src, context.engine, x)}, {DNNL_ARG_DST, pooled}, {DNNL_ARG_WORKSPACE, workspace}});
    } else {
      workspace = memory(forward.workspace_desc(), context.engine, ByteData(info[4], forward.workspace_desc().get_size(), "workspace"));
    }
    auto backward = shape.Backward(context, dnnl::algorithm::pooling_max).first;
    Execute(context, backward, {{DNNL_ARG_DIFF_DST, memory(shape.dst, context.engine, dy)},
                                {DNNL_ARG_WORKSPACE, workspace},
                                {DNNL_ARG_DIFF_SRC, memory(shape.src, context.engine, dx)}});
  });
}

}  // namespace retrain
