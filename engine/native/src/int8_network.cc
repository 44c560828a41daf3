// A whole frozen backbone in int8, bfloat16 or float32. int8: u8/s8 activations with one scale per tensor,
// s8 filters with one scale per output channel, int32 accumulation in oneDNN's int8 convolutions (VNNI, or
// AMX where the CPU has it). bf16: bf16 activations and filters, float32 accumulation (AVX512-BF16 or AMX).
// f32: the float network with every ReLU and residual sum in a convolution's epilogue.
// Folded BatchNorms arrive as the filters and biases; a residual sum and its ReLU run in the last
// convolution's epilogue, into the narrow type or into float (a residual stream kept in float32, rounded
// only where a convolution reads it). The plan is made once per model; primitives and buffers once per
// input shape.
#include "conv.h"
#include <array>
#include <cstring>
#include <optional>

namespace retrain {

using dnnl::memory;
using tag = memory::format_tag;
using dt = memory::data_type;

namespace {

struct Tensor {
  dt type;  // u8, s8, bf16, or f32 (the last: what the float classifier reads)
  float scale;  // real value = stored value * scale
  int64_t channels;
};

size_t SizeOf(dt type) { return type == dt::f32 ? sizeof(float) : type == dt::bf16 ? 2 : 1; }

bool IsInt8(dt type) { return type == dt::u8 || type == dt::s8; }

float Bf16ToFloat(uint16_t bits) {
  uint32_t widened = uint32_t(bits) << 16;
  float value;
  std::memcpy(&value, &widened, sizeof value);
  return value;
}

/** A reorder that converts `from` into `to`'s type and layout, multiplying by `scale` on the way. */
dnnl::reorder ScaledReorder(const dnnl::engine& engine, const memory::desc& from, const memory::desc& to, float scale) {
  dnnl::primitive_attr attr;
  attr.set_output_scales(0, {scale});
  return dnnl::reorder(dnnl::reorder::primitive_desc(engine, from, engine, to, attr));
}

struct Op {
  /** A convolution; the stem's 3x3 stride-2 max pool; or a float tensor rounded to a u8/s8 one (same shape). */
  enum class Kind { conv, maxpool, quantize } kind;
  int src, dst, sum;  // tensor indices; sum -1: none
  int64_t kernel, stride, pad;
  bool relu;
  std::vector<int8_t> filter;  // HWIO, s8 (a convolution reading u8/s8)
  std::vector<float> floatFilter;  // HWIO (a convolution reading bf16 or f32; oneDNN rounds it to bf16)
  std::vector<float> filterScale, bias;
};

/** What one input shape needs: every tensor's buffer and size, the primitives, the filters in their layouts. */
struct Instance {
  int64_t n, h, w;
  std::vector<std::pair<int64_t, int64_t>> sizes;  // per tensor: height, width
  std::vector<int> bufferOf;  // per tensor
  std::vector<std::vector<uint8_t>> buffers;
  std::vector<dnnl::primitive> primitives;  // per op
  std::vector<memory::desc> srcDescs, dstDescs;
  std::vector<memory> weights, biases;
  /** Per op with a residual of another width than its output: the reorder that scales it into the output's type. */
  std::vector<std::optional<dnnl::reorder>> residualCopies;
  memory::desc input;  // the caller's float NHWC batch
  dnnl::reorder quantizeInput;
  std::vector<uint8_t> scratchpad;
};


class Int8Network {
 public:
  std::vector<Tensor> tensors;
  std::vector<Op> ops;

  void Run(Context& context, const float* input, int64_t n, int64_t h, int64_t w, float* out, bool pool) {
    Instance& instance = InstanceFor(context, n, h, w);
    memory given(instance.input, context.engine, const_cast<float*>(input));
    Execute(context, instance.quantizeInput, given, Memory(context, instance, 0, instance.srcDescs[0]));
    memory scratchpad(memory::desc({int64_t(instance.scratchpad.size())}, dt::u8, tag::x), context.engine, instance.scratchpad.data());
    for (size_t i = 0; i < ops.size(); i++) {
      const Op& op = ops[i];
      memory src = Memory(context, instance, op.src, instance.srcDescs[i]);
      memory dst = Memory(context, instance, op.dst, instance.dstDescs[i]);
      if (op.kind == Op::Kind::maxpool) {
        Execute(context, instance.primitives[i], {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, dst}, {DNNL_ARG_SCRATCHPAD, scratchpad}});
        continue;
      }
      if (op.kind == Op::Kind::quantize) {
        Execute(context, instance.primitives[i], {{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, dst}});
        continue;
      }
      // The sum post-op adds what the destination holds: the residual, there already where the two share a buffer.
      if (op.sum >= 0) {
        memory residual = Memory(context, instance, op.sum, Desc(instance, op.sum));
        if (instance.residualCopies[i]) Execute(context, *instance.residualCopies[i], residual, dst);
        else if (residual.get_data_handle() != dst.get_data_handle())
          std::memcpy(dst.get_data_handle(), residual.get_data_handle(), instance.dstDescs[i].get_size());
      }
      Execute(context, instance.primitives[i],
              {{DNNL_ARG_SRC, src},
               {DNNL_ARG_WEIGHTS, instance.weights[i]},
               {DNNL_ARG_BIAS, instance.biases[i]},
               {DNNL_ARG_DST, dst},
               {DNNL_ARG_SCRATCHPAD, scratchpad}});
    }
    Dequantize(instance, out, pool);
  }

  /** Height, width and channels of the last tensor for an input of h x w. */
  std::array<int64_t, 3> OutputShape(int64_t h, int64_t w) const {
    auto [oh, ow] = Sizes(h, w).back();
    return {oh, ow, tensors.back().channels};
  }

  int64_t OutputElements(int64_t n, int64_t h, int64_t w, bool pool) const {
    auto [oh, ow, channels] = OutputShape(h, w);
    return pool ? n * channels : n * oh * ow * channels;
  }

 private:
  std::list<Instance> instances_;  // most recently used first

  std::vector<std::pair<int64_t, int64_t>> Sizes(int64_t h, int64_t w) const {
    std::vector<std::pair<int64_t, int64_t>> sizes(tensors.size(), {0, 0});
    sizes[0] = {h, w};
    for (const Op& op : ops) {
      auto [ih, iw] = sizes[size_t(op.src)];
      bool pool = op.kind == Op::Kind::maxpool, same = op.kind == Op::Kind::quantize;
      int64_t k = pool ? 3 : same ? 1 : op.kernel, s = pool ? 2 : same ? 1 : op.stride, p = pool ? 1 : same ? 0 : op.pad;
      int64_t oh = (ih + 2 * p - k) / s + 1, ow = (iw + 2 * p - k) / s + 1;
      if (ih + 2 * p < k || iw + 2 * p < k) throw std::invalid_argument("the image is too small for the network");
      sizes[size_t(op.dst)] = {oh, ow};
    }
    return sizes;
  }

  memory::desc Desc(const Instance& instance, int tensor) const {
    const Tensor& t = tensors[size_t(tensor)];
    auto [h, w] = instance.sizes[size_t(tensor)];
    return memory::desc({instance.n, t.channels, h, w}, t.type, tag::nhwc);
  }

  static void* Data(Instance& instance, int tensor) { return instance.buffers[size_t(instance.bufferOf[size_t(tensor)])].data(); }

  memory Memory(Context& context, Instance& instance, int tensor, const memory::desc& desc) const {
    return memory(desc, context.engine, Data(instance, tensor));
  }

  Instance& InstanceFor(Context& context, int64_t n, int64_t h, int64_t w) {
    for (auto it = instances_.begin(); it != instances_.end(); ++it) {
      if (it->n == n && it->h == h && it->w == w) {
        instances_.splice(instances_.begin(), instances_, it);
        return instances_.front();
      }
    }
    // Two shapes kept (a batch and its remainder): each holds its buffers and reordered filters.
    if (instances_.size() >= 2) instances_.pop_back();
    instances_.emplace_front();
    Instance& instance = instances_.front();
    try {
      Build(context, instance, n, h, w);
    } catch (...) {
      instances_.pop_front();
      throw;
    }
    return instance;
  }

  void Build(Context& context, Instance& instance, int64_t n, int64_t h, int64_t w) {
    instance.n = n, instance.h = h, instance.w = w;
    instance.sizes = Sizes(h, w);
    AssignBuffers(instance);
    size_t scratchpad = 0;
    for (const Op& op : ops) {
      memory::desc src = Desc(instance, op.src), dst = Desc(instance, op.dst);
      instance.srcDescs.push_back(src);
      instance.dstDescs.push_back(dst);
      dnnl::primitive_attr attr = PooledScratchpad();
      if (op.kind != Op::Kind::conv) {
        instance.weights.emplace_back();
        instance.biases.emplace_back();
        instance.residualCopies.emplace_back();
      }
      if (op.kind == Op::Kind::quantize) {
        instance.primitives.emplace_back(ScaledReorder(context.engine, src, dst, tensors[size_t(op.src)].scale / tensors[size_t(op.dst)].scale));
        continue;
      }
      if (op.kind == Op::Kind::maxpool) {
        dnnl::pooling_forward::primitive_desc pd({dnnl::prop_kind::forward_inference, dnnl::algorithm::pooling_max, src, dst, {2, 2},
                                                  {3, 3}, {1, 1}, {1, 1}},
                                                 attr, context.engine);
        scratchpad = std::max(scratchpad, pd.scratchpad_desc().get_size());
        instance.primitives.emplace_back(dnnl::pooling_forward(pd));
        continue;
      }
      const Tensor &in = tensors[size_t(op.src)], &out = tensors[size_t(op.dst)];
      int64_t o = out.channels, c = in.channels, k = op.kernel;
      memory::dims weightDims{o, c, k, k};
      bool int8 = IsInt8(in.type);
      std::vector<float> accumulatorBias = op.bias;
      if (int8) {
        std::vector<float> outputScales(static_cast<size_t>(o));
        for (size_t j = 0; j < size_t(o); j++) {
          // oneDNN 2.x: dst = output_scale * (accumulator + bias), so the bias is in accumulator units.
          float accumulatorScale = in.scale * op.filterScale[j];
          outputScales[j] = accumulatorScale / out.scale;
          accumulatorBias[j] = op.bias[j] / accumulatorScale;
        }
        attr.set_output_scales(1 << 1, outputScales);
      }
      dnnl::post_ops postOps;
      instance.residualCopies.emplace_back();
      if (op.sum >= 0) {
        const Tensor& residual = tensors[size_t(op.sum)];
        if (SizeOf(residual.type) == SizeOf(out.type)) {
          postOps.append_sum(residual.scale / out.scale, residual.type);
        } else {
          instance.residualCopies.back() = ScaledReorder(context.engine, Desc(instance, op.sum), dst, residual.scale / out.scale);
          postOps.append_sum(1.f);
        }
      }
      if (op.relu) postOps.append_eltwise(1.f, dnnl::algorithm::eltwise_relu, 0.f, 0.f);
      attr.set_post_ops(postOps);
      memory::desc biasDesc({o}, dt::f32, tag::x);
      dt weightType = int8 ? dt::s8 : in.type;
      dnnl::convolution_forward::desc desc(dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct, src,
                                           memory::desc(weightDims, weightType, tag::any), biasDesc, dst, {op.stride, op.stride},
                                           {0, 0}, {op.pad, op.pad}, {op.pad, op.pad});
      dnnl::convolution_forward::primitive_desc pd(desc, attr, context.engine);
      scratchpad = std::max(scratchpad, pd.scratchpad_desc().get_size());
      instance.primitives.emplace_back(dnnl::convolution_forward(pd));
      instance.weights.push_back(ReorderedWeights(context, instance, op, pd.weights_desc(), weightDims, int8));
      memory bias(biasDesc, context.engine);
      std::memcpy(bias.get_data_handle(), accumulatorBias.data(), accumulatorBias.size() * sizeof(float));
      instance.biases.push_back(bias);
    }
    instance.scratchpad.resize(std::max<size_t>(scratchpad, 1));
    instance.input = memory::desc({n, tensors[0].channels, h, w}, dt::f32, tag::nhwc);
    instance.quantizeInput = ScaledReorder(context.engine, instance.input, Desc(instance, 0), 1.f / tensors[0].scale);
  }

  /** A convolution's filter in the layout its primitive wants: another shape's copy where the layout is the same (it usually is). */
  memory ReorderedWeights(Context& context, const Instance& instance, const Op& op, const memory::desc& wanted, const memory::dims& dims,
                          bool int8) {
    size_t i = instance.weights.size();
    for (const Instance& other : instances_) {
      if (&other != &instance && other.weights.size() > i && other.weights[i] && other.weights[i].get_desc() == wanted) {
        return other.weights[i];
      }
    }
    memory given = int8 ? memory(memory::desc(dims, dt::s8, tag::hwio), context.engine, const_cast<int8_t*>(op.filter.data()))
                        : memory(memory::desc(dims, dt::f32, tag::hwio), context.engine, const_cast<float*>(op.floatFilter.data()));
    memory reordered(wanted, context.engine);
    Execute(context, dnnl::reorder(given, reordered), given, reordered);
    return reordered;
  }

  /**
   * Buffers shared by tensors whose lives do not overlap: a tensor's buffer is free again after the last op
   * that reads it. A residual sum's output takes over the residual's buffer where this op reads it last and
   * it has the same bytes: the sum then adds in place, with no copy.
   */
  void AssignBuffers(Instance& instance) {
    std::vector<size_t> lastRead(tensors.size(), 0);
    for (size_t i = 0; i < ops.size(); i++) {
      lastRead[size_t(ops[i].src)] = i;
      if (ops[i].sum >= 0) lastRead[size_t(ops[i].sum)] = i;
    }
    lastRead.back() = ops.size();  // the output is read after the last op
    auto bytesOf = [&](size_t t) {
      auto [h, w] = instance.sizes[t];
      return size_t(instance.n * h * w * tensors[t].channels) * SizeOf(tensors[t].type);
    };
    instance.bufferOf.assign(tensors.size(), -1);
    std::vector<int> free;
    auto take = [&](size_t t) {
      size_t bytes = bytesOf(t);
      auto best = free.end();
      for (auto it = free.begin(); it != free.end(); ++it) {
        size_t size = instance.buffers[size_t(*it)].size();
        if (size >= bytes && (best == free.end() || size < instance.buffers[size_t(*best)].size())) best = it;
      }
      if (best != free.end()) {
        instance.bufferOf[t] = *best;
        free.erase(best);
      } else {
        instance.bufferOf[t] = int(instance.buffers.size());
        instance.buffers.emplace_back(bytes);
      }
    };
    take(0);
    for (size_t i = 0; i < ops.size(); i++) {
      const Op& op = ops[i];
      bool inPlace = op.kind == Op::Kind::conv && op.sum >= 0 && op.sum != op.src && lastRead[size_t(op.sum)] == i &&
                     bytesOf(size_t(op.sum)) == bytesOf(size_t(op.dst));
      if (inPlace) instance.bufferOf[size_t(op.dst)] = instance.bufferOf[size_t(op.sum)];
      else take(size_t(op.dst));
      for (int read : {op.src, op.sum}) {
        if (read >= 0 && lastRead[size_t(read)] == i && !(inPlace && read == op.sum)) free.push_back(instance.bufferOf[size_t(read)]);
      }
    }
  }

  /** The last tensor as floats: whole (NHWC), or averaged over its pixels (the CNN codes). */
  void Dequantize(Instance& instance, float* out, bool pool) {
    const Tensor& last = tensors.back();
    auto [h, w] = instance.sizes.back();
    int64_t pixels = h * w, c = last.channels;
    const void* data = Data(instance, int(tensors.size() - 1));
    auto value = [&](int64_t i) {
      if (last.type == dt::f32) return static_cast<const float*>(data)[i];
      if (last.type == dt::bf16) return Bf16ToFloat(static_cast<const uint16_t*>(data)[i]);
      return last.type == dt::s8 ? float(static_cast<const int8_t*>(data)[i]) : float(static_cast<const uint8_t*>(data)[i]);
    };
    if (!pool) {
      for (int64_t i = 0; i < instance.n * pixels * c; i++) out[i] = value(i) * last.scale;
      return;
    }
    for (int64_t image = 0; image < instance.n; image++) {
      float* row = out + image * c;
      std::fill(row, row + c, 0.f);
      for (int64_t p = 0; p < pixels; p++) {
        for (int64_t j = 0; j < c; j++) row[j] += value((image * pixels + p) * c + j);
      }
      for (int64_t j = 0; j < c; j++) row[j] *= last.scale / float(pixels);
    }
  }
};

int64_t IntField(const Napi::Object& object, const char* name) { return object.Get(name).ToNumber().Int64Value(); }

/** Symmetric per-output-channel s8 weights of an HWIO float filter: the scale is the channel's largest magnitude over 127. */
void QuantizeFilter(const float* hwio, size_t elements, int64_t outChannels, Op& op) {
  op.filter.resize(elements);
  op.filterScale.assign(size_t(outChannels), 0.f);
  for (size_t i = 0; i < elements; i++) {
    float& scale = op.filterScale[i % size_t(outChannels)];
    scale = std::max(scale, std::fabs(hwio[i]) / 127.f);
  }
  for (float& scale : op.filterScale) scale = scale > 0.f ? scale : 1.f;
  for (size_t i = 0; i < elements; i++) {
    float q = std::nearbyint(hwio[i] / op.filterScale[i % size_t(outChannels)]);
    op.filter[i] = int8_t(std::max(-127.f, std::min(127.f, q)));
  }
}

/**
 * Takes the rounded filter's expected error off the bias: on an input of channel means `mean`, the
 * rounded filter is off by sum((Wq - W) * mean) per output channel, the same at every pixel (bias
 * correction, Nagel et al. 2019).
 */
void CorrectBias(const float* hwio, const float* mean, int64_t inChannels, Op& op) {
  size_t outChannels = op.filterScale.size();
  for (size_t i = 0; i < op.filter.size(); i++) {
    size_t o = i % outChannels, c = (i / outChannels) % size_t(inChannels);
    op.bias[o] -= (float(op.filter[i]) * op.filterScale[o] - hwio[i]) * mean[c];
  }
}

Int8Network* Parse(const Napi::Object& spec) {
  auto network = std::make_unique<Int8Network>();
  Napi::Array tensors = spec.Get("tensors").As<Napi::Array>();
  for (uint32_t i = 0; i < tensors.Length(); i++) {
    Napi::Object t = tensors.Get(i).As<Napi::Object>();
    float scale = t.Get("scale").ToNumber().FloatValue();
    int64_t channels = IntField(t, "channels");
    std::string type = t.Get("type").ToString().Utf8Value();
    if (!(scale > 0.f) || !std::isfinite(scale) || channels <= 0) throw std::invalid_argument("tensor " + std::to_string(i) + ": bad scale or channels");
    if (type != "u8" && type != "s8" && type != "bf16" && type != "f32") {
      throw std::invalid_argument("tensor " + std::to_string(i) + ": bad type " + type);
    }
    if ((type == "bf16" || type == "f32") && scale != 1.f) throw std::invalid_argument("tensor " + std::to_string(i) + ": a float tensor has scale 1");
    network->tensors.push_back({type == "u8" ? dt::u8 : type == "s8" ? dt::s8 : type == "bf16" ? dt::bf16 : dt::f32, scale, channels});
  }
  Napi::Array ops = spec.Get("ops").As<Napi::Array>();
  int count = int(network->tensors.size());
  for (uint32_t i = 0; i < ops.Length(); i++) {
    Napi::Object o = ops.Get(i).As<Napi::Object>();
    Op op{};
    std::string kind = o.Get("kind").ToString().Utf8Value();
    if (kind != "conv" && kind != "maxpool" && kind != "quantize") throw std::invalid_argument("op " + std::to_string(i) + ": bad kind " + kind);
    op.kind = kind == "maxpool" ? Op::Kind::maxpool : kind == "quantize" ? Op::Kind::quantize : Op::Kind::conv;
    op.src = int(IntField(o, "src"));
    op.dst = int(IntField(o, "dst"));
    op.sum = o.Has("sum") ? int(IntField(o, "sum")) : -1;
    if (op.src < 0 || op.src >= count || op.dst <= 0 || op.dst >= count || op.sum >= count || op.src == op.dst) {
      throw std::invalid_argument("op " + std::to_string(i) + ": a tensor index out of range");
    }
    if (op.kind == Op::Kind::quantize) {
      const Tensor &from = network->tensors[size_t(op.src)], &to = network->tensors[size_t(op.dst)];
      if (from.channels != to.channels || to.type == dt::f32) {
        throw std::invalid_argument("op " + std::to_string(i) + ": quantize keeps the channels and makes u8, s8 or bf16");
      }
      network->ops.push_back(std::move(op));
      continue;
    }
    if (op.kind == Op::Kind::maxpool) {
      const Tensor &from = network->tensors[size_t(op.src)], &to = network->tensors[size_t(op.dst)];
      if (from.type == dt::s8 || to.type != from.type || from.scale != to.scale) {
        throw std::invalid_argument("op " + std::to_string(i) + ": max pooling keeps a u8, bf16 or f32 tensor and its scale");
      }
      network->ops.push_back(std::move(op));
      continue;
    }
    dt in = network->tensors[size_t(op.src)].type, outType = network->tensors[size_t(op.dst)].type;
    bool floatIn = !IsInt8(in);
    if (in == dt::f32 ? outType != dt::f32 : in == dt::bf16 ? outType != dt::bf16 && outType != dt::f32 : outType == dt::bf16) {
      throw std::invalid_argument("op " + std::to_string(i) +
                                  ": an f32 convolution writes f32, a bf16 one bf16 or f32, an int8 one u8, s8 or f32");
    }
    op.kernel = IntField(o, "kernel");
    op.stride = IntField(o, "stride");
    op.pad = IntField(o, "pad");
    op.relu = o.Get("relu").ToBoolean();
    int64_t c = network->tensors[size_t(op.src)].channels, out = network->tensors[size_t(op.dst)].channels;
    if (op.kernel <= 0 || op.stride <= 0 || op.pad < 0) throw std::invalid_argument("op " + std::to_string(i) + ": bad kernel, stride or padding");
    size_t elements = size_t(op.kernel * op.kernel * c * out);
    const float* filter = FloatData(o.Get("filter"), elements, "filter");
    const float* bias = FloatData(o.Get("bias"), size_t(out), "bias");
    op.bias.assign(bias, bias + out);
    if (floatIn) {
      op.floatFilter.assign(filter, filter + elements);
    } else {
      QuantizeFilter(filter, elements, out, op);
      if (o.Has("inputMean")) CorrectBias(filter, FloatData(o.Get("inputMean"), size_t(c), "inputMean"), c, op);
    }
    network->ops.push_back(std::move(op));
  }
  if (network->ops.empty()) throw std::invalid_argument("a network needs at least one op");
  return network.release();
}

}  // namespace

/** int8Weights(handle): per op, its s8 filter (HWIO), the filter's scale per output channel and the (corrected) float bias; null for other ops. */
Napi::Value Int8Weights(const Napi::CallbackInfo& info) {
  if (info.Length() != 1 || !info[0].IsExternal()) throw Napi::Error::New(info.Env(), "int8Weights: expects a network");
  Int8Network& network = *info[0].As<Napi::External<Int8Network>>().Data();
  Napi::Array all = Napi::Array::New(info.Env(), network.ops.size());
  for (size_t i = 0; i < network.ops.size(); i++) {
    const Op& op = network.ops[i];
    if (op.kind != Op::Kind::conv || op.filter.empty()) {
      all.Set(uint32_t(i), info.Env().Null());
      continue;
    }
    Napi::Object weights = Napi::Object::New(info.Env());
    auto filter = Napi::Int8Array::New(info.Env(), op.filter.size());
    std::memcpy(filter.Data(), op.filter.data(), op.filter.size());
    auto floats = [&](const std::vector<float>& values) {
      auto array = Napi::Float32Array::New(info.Env(), values.size());
      std::memcpy(array.Data(), values.data(), values.size() * sizeof(float));
      return array;
    };
    weights.Set("filter", filter);
    weights.Set("scales", floats(op.filterScale));
    weights.Set("bias", floats(op.bias));
    all.Set(uint32_t(i), weights);
  }
  return all;
}

/** int8Network({tensors: [{signed, scale, channels}], ops: [{kind, src, dst, sum?, kernel, stride, pad, relu, filter, bias}]}): a handle. */
Napi::Value MakeInt8Network(const Napi::CallbackInfo& info) {
  Napi::Value handle;
  Guarded(info, "int8Network", [&] {
    if (info.Length() != 1 || !info[0].IsObject()) throw std::invalid_argument("expects a network description");
    Int8Network* network = Parse(info[0].As<Napi::Object>());
    handle = Napi::External<Int8Network>::New(info.Env(), network, [](Napi::Env, Int8Network* n) { delete n; });
  });
  return handle;
}

/** int8Run(handle, input, dims [N,H,W,C], out, pool): the first tensor from float NHWC input; out the last, pooled or whole. */
Napi::Value RunInt8Network(const Napi::CallbackInfo& info) {
  return Guarded(info, "int8Run", [&] {
    if (info.Length() != 5 || !info[0].IsExternal()) throw std::invalid_argument("expects (network, input, dims, out, pool)");
    Int8Network& network = *info[0].As<Napi::External<Int8Network>>().Data();
    const int32_t* d = IntData(info[2], 4, "dims");
    if (d[0] == 0 || d[1] == 0 || d[2] == 0 || d[3] != network.tensors[0].channels) throw std::invalid_argument("dims do not fit the network's input");
    bool pool = info[4].ToBoolean();
    const float* input = FloatData(info[1], size_t(d[0]) * size_t(d[1]) * size_t(d[2]) * size_t(d[3]), "input");
    float* out = FloatData(info[3], size_t(network.OutputElements(d[0], d[1], d[2], pool)), "out");
    network.Run(ContextOf(info.Env()), input, d[0], d[1], d[2], out, pool);
  });
}

/** int8OutputShape(handle, h, w): [height, width, channels] of the last tensor for an h x w input. */
Napi::Value Int8OutputShape(const Napi::CallbackInfo& info) {
  Napi::Value shape;
  Guarded(info, "int8OutputShape", [&] {
    if (info.Length() != 3 || !info[0].IsExternal()) throw std::invalid_argument("expects (network, height, width)");
    const Int8Network& network = *info[0].As<Napi::External<Int8Network>>().Data();
    int64_t h = info[1].ToNumber().Int64Value(), w = info[2].ToNumber().Int64Value();
    if (h <= 0 || w <= 0) throw std::invalid_argument("height and width must be positive");
    auto [oh, ow, channels] = network.OutputShape(h, w);
    shape = Napi::Int32Array::New(info.Env(), 3);
    auto values = shape.As<Napi::Int32Array>();
    values[0] = int32_t(oh);
    values[1] = int32_t(ow);
    values[2] = int32_t(channels);
  });
  return shape;
}

}  // namespace retrain
