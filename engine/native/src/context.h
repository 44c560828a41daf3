// Per-thread state of the addon (one per Node environment: the main thread and each worker thread
// that loads it): the oneDNN engine and stream, primitives cached by shape, and filters already
// reordered into the layout a primitive prefers.
#pragma once
#include <napi.h>
#include <dnnl.hpp>
#include <omp.h>
#include <signal.h>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <iterator>
#include <list>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace retrain {

struct CachedPrimitive {
  dnnl::primitive primitive;
  std::shared_ptr<void> descriptor;  // the primitive_desc, kept for its memory descriptors
};

/**
 * Reordered filters by (filter id, use), kept once a filter comes back (inference reuses its filters;
 * a training step's filters are new every step, so they are kept only when an evaluation reuses them),
 * evicted least recently used past a byte budget, or when a newer filter takes the same slot.
 */
class WeightCache {
 public:
  explicit WeightCache(size_t budget) : budget_(budget) {}
  dnnl::memory* find(const std::string& key);
  /** Whether `key` was asked for before (remembers the last few thousand keys, nothing else). */
  bool seenBefore(const std::string& key);
  /** Keeps `memory` under `key`; a non-empty `slot` (one layer's use) drops what that slot held before. */
  dnnl::memory* insert(const std::string& key, dnnl::memory memory, size_t bytes, const std::string& slot = "");

 private:
  struct Entry { std::string key; dnnl::memory memory; size_t bytes; std::string slot; };
  void erase(std::list<Entry>::iterator entry);
  std::list<Entry> order_;
  std::unordered_map<std::string, std::list<Entry>::iterator> index_;
  std::unordered_map<std::string, std::string> slots_;  // slot -> key
  size_t budget_, used_ = 0;
  std::list<std::string> seenOrder_;
  std::unordered_set<std::string> seen_;
};

/**
 * Buffers of the sizes kernels keep asking for (reordered filters, gradients in oneDNN's layout,
 * scratchpads, pooling workspaces), kept for the next call. Allocating them anew every call lets glibc
 * raise its mmap threshold and grow the heap by fragments: a training job's RSS grew by gigabytes.
 */
class BufferPool {
 public:
  explicit BufferPool(size_t budget) : budget_(budget) {}
  ~BufferPool();
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;
  void* take(size_t bytes);
  /** Keeps the buffer for the next call of its size, or frees it past the byte budget. */
  void give(void* data, size_t bytes);

 private:
  std::unordered_multimap<size_t, void*> free_;
  size_t budget_, kept_ = 0;
};

/** What one kernel call borrowed from the pool: given back when the call ends, after its stream has finished. */
class Borrowed {
 public:
  explicit Borrowed(BufferPool& pool) : pool_(pool) {}
  ~Borrowed();
  Borrowed(const Borrowed&) = delete;
  Borrowed& operator=(const Borrowed&) = delete;
  dnnl::memory Memory(const dnnl::memory::desc& desc, const dnnl::engine& engine);

 private:
  BufferPool& pool_;
  std::vector<std::pair<void*, size_t>> items_;
};

/**
 * bfloat16 copies of scaled trained filters (a folded BatchNorm's scale), one per layer (named by the scale's id):
 * the forward pass narrows a step's filter once, and its backward pass re-lays out the same copy. Cleared past a budget.
 */
class NarrowedFilters {
 public:
  explicit NarrowedFilters(size_t budget) : budget_(budget) {}
  ~NarrowedFilters() { clear(); }
  NarrowedFilters(const NarrowedFilters&) = delete;
  NarrowedFilters& operator=(const NarrowedFilters&) = delete;
  /** The layer's copy of filter `filterId` (`bytes` long): `fill` writes it there unless the layer holds it already. */
  void* For(int64_t scaleId, int64_t filterId, size_t bytes, const std::function<void(void*)>& fill);

 private:
  struct Entry { int64_t filterId; size_t bytes; void* data; };
  void clear();
  std::unordered_map<int64_t, Entry> layers_;
  size_t budget_, used_ = 0;
};

/** Primitives kept per shape: a model has a few dozen; varying batch sizes add a few more. */
constexpr size_t kMaxPrimitives = 2048;

struct Context {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
  std::unordered_map<std::string, CachedPrimitive> primitives;
  WeightCache weights{512u << 20};
  BufferPool buffers{768u << 20};
  NarrowedFilters narrowedFilters{256u << 20};
  /** Convolutions read bfloat16 copies of their inputs and filters (float32 accumulation and outputs). */
  bool bf16 = false;
  /** Time inside oneDNN's primitives: what a step would take if nothing else did (the bench's ceiling). */
  std::chrono::steady_clock::duration inPrimitives{};
  /** Primitives run so far (reorders included). */
  uint64_t primitiveRuns = 0;
};

/** A primitive and its descriptor for `key`, made once per shape: every kernel caches its primitives this way. */
template <typename Primitive>
std::pair<dnnl::primitive, const typename Primitive::primitive_desc*> Cached(Context& context, const std::string& key,
                                                                       const std::function<typename Primitive::primitive_desc()>& make) {
  using Desc = typename Primitive::primitive_desc;
  auto hit = context.primitives.find(key);
  if (hit == context.primitives.end()) {
    if (context.primitives.size() >= kMaxPrimitives) context.primitives.clear();
    auto desc = std::make_shared<Desc>(make());
    hit = context.primitives.emplace(key, CachedPrimitive{Primitive(*desc), desc}).first;
  }
  return {hit->second.primitive, static_cast<const Desc*>(hit->second.descriptor.get())};
}

/** Every signal but the faults a thread raises itself (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP). */
const sigset_t& AsynchronousSignals();

/**
 * Holds this thread's asynchronous signals while a primitive runs: they arrive when it returns, or at another
 * thread. oneDNN's JIT GEMM kernels (Debian's 2.6.3 among them, uxlfoundation/oneDNN#4845) point rsp into the
 * heap, so a signal handled meanwhile writes its frame over heap memory: a profiler's SIGPROF, or SIGTERM while
 * a worker trains in fp32, aborted the process later in free(). Held only around primitives, so a profile still
 * samples the addon's own loops.
 */
class SignalsHeld {
 public:
  SignalsHeld() { pthread_sigmask(SIG_BLOCK, &AsynchronousSignals(), &previous_); }
  ~SignalsHeld() { pthread_sigmask(SIG_SETMASK, &previous_, nullptr); }
  SignalsHeld(const SignalsHeld&) = delete;
  SignalsHeld& operator=(const SignalsHeld&) = delete;

 private:
  sigset_t previous_;
};

/** Runs a primitive to completion on the context's stream, counting its time. */
inline void Execute(Context& context, const dnnl::primitive& primitive, const std::unordered_map<int, dnnl::memory>& args) {
  SignalsHeld held;
  auto started = std::chrono::steady_clock::now();
  primitive.execute(context.stream, args);
  context.stream.wait();
  context.inPrimitives += std::chrono::steady_clock::now() - started;
  context.primitiveRuns++;
}

inline void Execute(Context& context, const dnnl::reorder& reorder, const dnnl::memory& from, const dnnl::memory& to) {
  Execute(context, reorder, {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}});
}

Context& ContextOf(const Napi::Env& env);

/** The float data of a Float32Array, checked to hold at least `elements` values. */
float* FloatData(const Napi::Value& value, size_t elements, const char* what);
/** The ints of an Int32Array argument, checked to hold exactly `count` values. */
const int32_t* IntData(const Napi::Value& value, size_t count, const char* what);

/** body(begin, end) on every core, each over one contiguous range of [0, n); on one thread when n is small. */
template <typename Body>
void ParallelRanges(size_t n, Body body) {
  if (n <= 65536) return body(0, n);
#pragma omp parallel
  {
    size_t threads = size_t(omp_get_num_threads()), thread = size_t(omp_get_thread_num());
    size_t chunk = (n + threads - 1) / threads;
    size_t begin = std::min(n, thread * chunk), end = std::min(n, begin + chunk);
    body(begin, end);
  }
}

/**
 * A function compiled twice, for AVX2 (x86-64-v3) and for any x86-64, the CPU picking one when the addon loads: the addon
 * is built for the baseline (an image built on one host runs on others), where GCC vectorises 4 floats wide only. Not
 * AVX-512: tfjs' wasm heap puts tensors at any 8-byte offset, where half of the 64-byte loads span two cache lines; Adam's
 * pass over ResNet-50's 24.6 M weights in tfjs' tensors took 7.3-8.3 ms with 512-bit vectors and 5.7-6.0 with 256-bit
 * ones (2-core EPYC, best of 8; 6.3 with 512-bit on 64-byte-aligned arrays).
 */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define WIDE_VECTORS __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define WIDE_VECTORS
#endif

/** dz = dy where y > 0, else 0, over [begin, end). */
void MaskedGradient(const float* __restrict dy, const float* __restrict y, float* __restrict dz, size_t begin, size_t end);

/** MaskedGradient rounded to bfloat16 (to nearest even, as oneDNN's reorders; NaN stays NaN), and into `kept` in float32 too when given. */
void MaskedGradientBf16(const float* __restrict dy, const float* __restrict y, float* __restrict kept, uint16_t* __restrict narrow, size_t begin,
                        size_t end);

/** The two above with dz written over dy: no second buffer's lines to fetch before they are written. */
void MaskInPlace(float* __restrict dz, const float* __restrict y, size_t begin, size_t end);
void MaskInPlaceBf16(float* __restrict dz, const float* __restrict y, uint16_t* __restrict narrow, size_t begin, size_t end);

/** Runs `body`, turning oneDNN and argument errors into JavaScript errors named after the kernel. */
template <typename Body>
Napi::Value Guarded(const Napi::CallbackInfo& info, const char* kernel, Body body) {
  try {
    body();
    return info.Env().Undefined();
  } catch (const dnnl::error& error) {
    throw Napi::Error::New(info.Env(), std::string(kernel) + ": oneDNN: " + error.what());
  } catch (const std::bad_alloc&) {
    throw Napi::Error::New(info.Env(), std::string(kernel) + ": out of memory");
  } catch (const std::invalid_argument& error) {
    throw Napi::Error::New(info.Env(), std::string(kernel) + ": " + error.what());
  }
}

/** (first, second, out, elements) of one length, `range` run over them on every core. */
template <typename Range>
Napi::Value ElementwisePair(const Napi::CallbackInfo& info, const char* kernel, const char* const (&names)[3], Range range) {
  return Guarded(info, kernel, [&] {
    if (info.Length() != 4) throw std::invalid_argument("expects 4 arguments");
    int64_t elements = info[3].ToNumber().Int64Value();
    if (elements <= 0) throw std::invalid_argument("elements must be positive");
    const float* first = FloatData(info[0], size_t(elements), names[0]);
    const float* second = FloatData(info[1], size_t(elements), names[1]);
    float* out = FloatData(info[2], size_t(elements), names[2]);
    ParallelRanges(size_t(elements), [&](size_t begin, size_t end) { range(first, second, out, begin, end); });
  });
}

Napi::Value Conv2D(const Napi::CallbackInfo& info);
Napi::Value Conv2DBackpropInput(const Napi::CallbackInfo& info);
Napi::Value Conv2DBackpropFilter(const Napi::CallbackInfo& info);
Napi::Value ConvBackward(const Napi::CallbackInfo& info);
Napi::Value MatMul(const Napi::CallbackInfo& info);
Napi::Value Binary(const Napi::CallbackInfo& info);
Napi::Value ReluGrad(const Napi::CallbackInfo& info);
Napi::Value AddRelu(const Napi::CallbackInfo& info);
Napi::Value MaxPool(const Napi::CallbackInfo& info);
Napi::Value MaxPoolWorkspaceBytes(const Napi::CallbackInfo& info);
Napi::Value MaxPoolGrad(const Napi::CallbackInfo& info);
Napi::Value AvgPoolGrad(const Napi::CallbackInfo& info);
Napi::Value Transpose(const Napi::CallbackInfo& info);
Napi::Value Adam(const Napi::CallbackInfo& info);
Napi::Value SetPrecision(const Napi::CallbackInfo& info);
Napi::Value BatchNormTrain(const Napi::CallbackInfo& info);
Napi::Value BatchNormGrad(const Napi::CallbackInfo& info);
Napi::Value MakeInt8Network(const Napi::CallbackInfo& info);
Napi::Value RunInt8Network(const Napi::CallbackInfo& info);
Napi::Value Int8Weights(const Napi::CallbackInfo& info);
Napi::Value Int8OutputShape(const Napi::CallbackInfo& info);

}  // namespace retrain
