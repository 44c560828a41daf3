// The addon's entry: its functions, each serving the tfjs kernel it is named for (or one of ours), and
// what the library is.
#include "context.h"

namespace retrain {

static Napi::Value Version(const Napi::CallbackInfo& info) {
  const dnnl_version_t* v = dnnl_version();
  return Napi::String::New(info.Env(), std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch));
}

/** primitiveSeconds(): seconds spent inside oneDNN's primitives on this thread so far. */
static Napi::Value PrimitiveSeconds(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), std::chrono::duration<double>(ContextOf(info.Env()).inPrimitives).count());
}

/** primitiveRuns(): oneDNN primitives (reorders included) run on this thread so far. */
static Napi::Value PrimitiveRuns(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), double(ContextOf(info.Env()).primitiveRuns));
}

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports["version"] = Napi::Function::New(env, Version);
  exports["primitiveSeconds"] = Napi::Function::New(env, PrimitiveSeconds);
  exports["primitiveRuns"] = Napi::Function::New(env, PrimitiveRuns);
  exports["conv2d"] = Napi::Function::New(env, Conv2D);
  exports["conv2dBackpropInput"] = Napi::Function::New(env, Conv2DBackpropInput);
  exports["conv2dBackpropFilter"] = Napi::Function::New(env, Conv2DBackpropFilter);
  exports["convBackward"] = Napi::Function::New(env, ConvBackward);
  exports["matMul"] = Napi::Function::New(env, MatMul);
  exports["binary"] = Napi::Function::New(env, Binary);
  exports["addRelu"] = Napi::Function::New(env, AddRelu);
  exports["reluGrad"] = Napi::Function::New(env, ReluGrad);
  exports["maxPool"] = Napi::Function::New(env, MaxPool);
  exports["maxPoolWorkspaceBytes"] = Napi::Function::New(env, MaxPoolWorkspaceBytes);
  exports["maxPoolGrad"] = Napi::Function::New(env, MaxPoolGrad);
  exports["avgPoolGrad"] = Napi::Function::New(env, AvgPoolGrad);
  exports["transpose"] = Napi::Function::New(env, Transpose);
  exports["adam"] = Napi::Function::New(env, Adam);
  exports["setPrecision"] = Napi::Function::New(env, SetPrecision);
  exports["batchNormTrain"] = Napi::Function::New(env, BatchNormTrain);
  exports["batchNormGrad"] = Napi::Function::New(env, BatchNormGrad);
  exports["int8Network"] = Napi::Function::New(env, MakeInt8Network);
  exports["int8Run"] = Napi::Function::New(env, RunInt8Network);
  exports["int8Weights"] = Napi::Function::New(env, Int8Weights);
  exports["int8OutputShape"] = Napi::Function::New(env, Int8OutputShape);
  return exports;
}

NODE_API_MODULE(onednn_kernels, Init)

}  // namespace retrain
