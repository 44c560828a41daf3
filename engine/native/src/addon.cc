// The addon's entry: its functions, each serving the tfjs kernel it is named for (or one of ours), and
// what the library is.
#include "context.h"
#include <sys/mman.h>
#include <cerrno>

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

/**
 * adviseHugePages(memory, bytes): asks Linux to back [memory's start, + bytes) with 2 MiB pages as it is touched
 * (transparent huge pages, where they are on or left to madvise); returns 0 or madvise's errno. The range may run past
 * what is mapped now: a wasm memory grows within its reservation, and the advice holds for what is mapped later.
 */
static Napi::Value AdviseHugePages(const Napi::CallbackInfo& info) {
  int error = 0;
  Guarded(info, "adviseHugePages", [&] {
    if (info.Length() != 2 || !info[0].IsArrayBuffer()) throw std::invalid_argument("expects (memory: ArrayBuffer, bytes)");
    constexpr uintptr_t kHugePage = 2u << 20;
    uintptr_t start = reinterpret_cast<uintptr_t>(info[0].As<Napi::ArrayBuffer>().Data());
    int64_t bytes = info[1].ToNumber().Int64Value();
    if (bytes <= 0) throw std::invalid_argument("bytes must be positive");
    uintptr_t first = (start + kHugePage - 1) & ~(kHugePage - 1), end = start + uintptr_t(bytes);
    if (end <= first) throw std::invalid_argument("the range holds no whole 2 MiB page");
    error = madvise(reinterpret_cast<void*>(first), end - first, MADV_HUGEPAGE) == 0 ? 0 : errno;
  });
  return Napi::Number::New(info.Env(), error);
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
  exports["adviseHugePages"] = Napi::Function::New(env, AdviseHugePages);
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
