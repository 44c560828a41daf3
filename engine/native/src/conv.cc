// Conv2D (and FusedConv2D with a bias and ReLU) forward, and what the backward kernels share.
#include "conv.h"
#include <algorithm>
#include <cstring>
#include <numeric>
#include <sstream>

namespace retrain {

using dnnl::memory;
using tag = memory::format_tag;

ConvGeometry ConvGeometry::From(const Napi::Value& value) {
  const int32_t* v = IntData(value, 17, "geometry");
  ConvGeometry g{v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11], v[12], v[13], v[14], v[15], v[16], /* filterKw */ v[5]};
  if (g.n == 0 || g.h == 0 || g.w == 0 || g.c == 0 || g.kh == 0 || g.kw == 0 || g.o == 0 || g.oh == 0 || g.ow == 0 || g.sh == 0 ||
      g.sw == 0 || g.dh == 0 || g.dw == 0) {
    throw std::invalid_argument("geometry has a zero dimension, stride or dilation");
  }
  auto expected = [](int64_t in, int64_t k, int64_t s, int64_t d, int64_t before, int64_t after) {
    return (in + before + after - ((k - 1) * d + 1)) / s + 1;
  };
  if (g.oh != expected(g.h, g.kh, g.sh, g.dh, g.pt, g.pb) || g.ow != expected(g.w, g.kw, g.sw, g.dw, g.pl, g.pr)) {
    throw std::invalid_argument("output size does not follow from input, filter, strides and padding");
  }
  return g;
}

std::string ConvGeometry::Key() const {
  std::ostringstream key;
  for (int64_t d : {n, h, w, c, kh, kw, o, oh, ow, sh, sw, dh, dw, pt, pl, pb, pr}) key << d << ',';
  return key.str();
}

/** The first and last taps of one dimension that read an input pixel for some output, when every tap between does too. */
static std::pair<int64_t, int64_t> LiveRange(int64_t in, int64_t k, int64_t stride, int64_t before, int64_t out) {
  auto live = [&](int64_t tap) {
    for (int64_t o = 0; o < out; o++) {
      int64_t at = o * stride - before + tap;
      if (at >= 0 && at < in) return true;
    }
    return false;
  };
  int64_t first = 0, last = k - 1;
  while (first < last && !live(first)) first++;
  while (last > first && !live(last)) last--;
  for (int64_t tap = first; tap <= last; tap++)
    if (!live(tap)) return {0, k - 1};
  return {first, last};
}

LiveTaps WithoutDeadTaps(const ConvGeometry& g) {
  if (g.dh != 1 || g.dw != 1) return {g};
  auto [top, bottom] = LiveRange(g.h, g.kh, g.sh, g.pt, g.oh);
  auto [left, right] = LiveRange(g.w, g.kw, g.sw, g.pl, g.ow);
  ConvGeometry cropped = g;
  cropped.kh = bottom - top + 1;
  cropped.kw = right - left + 1;
  if (cropped.kh == g.kh && cropped.kw == g.kw) return {g};
  cropped.pt = g.pt - top;
  cropped.pl = g.pl - left;
  cropped.pb = (g.oh - 1) * g.sh + cropped.kh - g.h - cropped.pt;
  cropped.pr = (g.ow - 1) * g.sw + cropped.kw - g.w - cropped.pl;
  if (cropped.pt < 0 || cropped.pl < 0 || cropped.pb < 0 || cropped.pr < 0) return {g};
  return {cropped, size_t((top * g.kw + left) * g.c * g.o), true, top, left};
}

float* LiveGradient(float* dFilter, const ConvGeometry& given, const LiveTaps& live) {
  if (live.cropped) std::memset(dFilter, 0, given.WeightElements() * sizeof(float));
  return dFilter + live.offset;
}

memory::data_type Operand(const Context& context) { return context.bf16 ? memory::data_type::bf16 : memory::data_type::f32; }
memory::desc Nhwc(const memory::dims& dims, memory::data_type type) { return memory::desc(dims, type, tag::nhwc); }
memory::desc ConvGeometry::Filter() const {
  return memory::desc(Weights(), memory::data_type::f32, memory::dims{1, o, filterKw * c * o, c * o});
}
memory::desc AnyLayout(const memory::dims& dims, memory::data_type type) { return memory::desc(dims, type, tag::any); }

/** `user`'s order of dimensions (plain strides), packed densely, holding `type`: a cropped filter's copy drops the gaps. */
static memory::desc PlainAs(const memory::desc& user, memory::data_type type) {
  const auto& strides = user.data.format_desc.blocking.strides;
  memory::dims dims = user.dims(), dense(dims.size());
  std::vector<size_t> order(dims.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return strides[a] > strides[b]; });
  int64_t step = 1;
  for (auto dim = order.rbegin(); dim != order.rend(); ++dim) {
    dense[*dim] = step;
    step *= dims[*dim];
  }
  return memory::desc(dims, type, dense);
}

/** The fields of a plain or blocked memory descriptor, as a cache key; empty for other formats (not kept). */
static std::string DescKey(const memory::desc& desc) {
  const dnnl_memory_desc_t& d = desc.data;
  if (d.format_kind != dnnl_blocked) return "";
  std::string key;
  auto put = [&](int64_t value) { key.append(reinterpret_cast<const char*>(&value), sizeof value); };
  const auto& blocking = d.format_desc.blocking;
  for (int64_t value : {int64_t(d.ndims), int64_t(d.data_type), int64_t(d.offset0), int64_t(blocking.inner_nblks), int64_t(d.extra.flags)})
    put(value);
  for (int i = 0; i < d.ndims; i++) {
    put(d.dims[i]);
    put(d.padded_dims[i]);
    put(d.padded_offsets[i]);
    put(blocking.strides[i]);
  }
  for (int i = 0; i < blocking.inner_nblks; i++) {
    put(blocking.inner_blks[i]);
    put(blocking.inner_idxs[i]);
  }
  return key;
}

/** The reorder from `from` to `to` with `scaling`: kept where both layouts have a key and any scaling its id. */
static dnnl::primitive ReorderBetween(Context& context, const memory::desc& from, const memory::desc& to, const Scaling& scaling) {
  auto make = [&] { return dnnl::reorder::primitive_desc(context.engine, from, context.engine, to, ScalePerOutput(scaling)); };
  std::string fromKey = DescKey(from), toKey = DescKey(to);
  if (fromKey.empty() || toKey.empty() || (scaling.values && scaling.id <= 0)) return dnnl::reorder(make());
  std::string scaled = scaling.values ? ":" + std::to_string(scaling.id) + ":" + std::to_string(scaling.dimension) : "";
  return Cached<dnnl::reorder>(context, "reorder:" + fromKey + "|" + toKey + scaled, make).first;
}

void Reorder(Context& context, Borrowed& borrowed, const memory& given, const memory& wanted, const Scaling& scaling) {
  const memory::desc& from = given.get_desc();
  const memory::desc& to = wanted.get_desc();
  bool narrows = from.data_type() == memory::data_type::f32 && to.data_type() == memory::data_type::bf16;
  bool plain = from.data.format_kind == dnnl_blocked && from.data.format_desc.blocking.inner_nblks == 0;
  // Narrowing and re-laying-out a float32 filter in one reorder reads it across its rows: cold from
  // memory (the optimizer wrote it last) that took 2.6 ms for a 512x512x3x3 bf16 filter, and 1.4 ms as
  // a streaming conversion in place (scales applied there) and a re-layout of the half-size copy.
  memory::desc narrowedDesc = narrows && plain ? PlainAs(from, to.data_type()) : to;
  if (narrowedDesc != to) {
    memory narrowed = borrowed.Memory(narrowedDesc, context.engine);
    Execute(context, ReorderBetween(context, from, narrowedDesc, scaling), {{DNNL_ARG_FROM, given}, {DNNL_ARG_TO, narrowed}});
    Execute(context, ReorderBetween(context, narrowedDesc, to, {}), {{DNNL_ARG_FROM, narrowed}, {DNNL_ARG_TO, wanted}});
    return;
  }
  Execute(context, ReorderBetween(context, from, to, scaling), {{DNNL_ARG_FROM, given}, {DNNL_ARG_TO, wanted}});
}

memory Converted(Context& context, Borrowed& borrowed, const memory::desc& wanted, const memory::desc& user, float* data) {
  memory given(user, context.engine, data);
  if (wanted == user) return given;
  memory converted = borrowed.Memory(wanted, context.engine);
  Reorder(context, borrowed, given, converted);
  return converted;
}

memory TensorIn(Context& context, Borrowed& borrowed, const memory::desc& wanted, const memory::dims& dims, float* data) {
  return Converted(context, borrowed, wanted, Nhwc(dims), data);
}

/** setPrecision(bf16): whether convolutions now run in bfloat16 (only where the CPU has AVX512-BF16; else float32). */
Napi::Value SetPrecision(const Napi::CallbackInfo& info) {
  Context& context = ContextOf(info.Env());
  auto isa = static_cast<unsigned>(dnnl::get_effective_cpu_isa());
  auto bf16 = static_cast<unsigned>(dnnl::cpu_isa::avx512_core_bf16);
  context.bf16 = info[0].ToBoolean() && (isa & bf16) == bf16;
  return Napi::Boolean::New(info.Env(), context.bf16);
}

std::pair<dnnl::primitive, const dnnl::convolution_forward::primitive_desc*> Forward(Context& context, const ConvGeometry& g, bool bias,
                                                                                    bool relu, bool residual) {
  std::string key = "conv-fwd:" + g.Key() + (bias ? "b" : "") + (residual ? "s" : "") + (relu ? "r" : "") + (context.bf16 ? "bf16" : "");
  return Cached<dnnl::convolution_forward>(context, key, [&] {
    auto biasDesc = bias ? memory::desc({g.o}, memory::data_type::f32, tag::x) : memory::desc();
    auto desc = dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct,
                                                Nhwc(g.Src(), Operand(context)), AnyLayout(g.Weights(), Operand(context)), biasDesc,
                                                Nhwc(g.Dst()), g.Strides(), g.Dilations(), g.PadL(), g.PadR());
    return dnnl::convolution_forward::primitive_desc(desc, EpilogueAttr(residual, relu), context.engine);
  });
}

dnnl::primitive_attr EpilogueAttr(bool residual, bool relu) {
  dnnl::post_ops ops;
  if (residual) ops.append_sum(1.f);
  if (relu) ops.append_eltwise(1.f, dnnl::algorithm::eltwise_relu, 0.f, 0.f);
  dnnl::primitive_attr attr = PooledScratchpad();
  attr.set_post_ops(ops);
  return attr;
}

void HoldResidual(const float* residual, float* out, size_t elements) {
  ParallelRanges(elements, [&](size_t begin, size_t end) { std::memcpy(out + begin, residual + begin, (end - begin) * sizeof(float)); });
}

dnnl::primitive_attr ScalePerOutput(const Scaling& scaling) {
  dnnl::primitive_attr attr;
  if (scaling.values) attr.set_output_scales(1 << scaling.dimension, std::vector<float>(scaling.values, scaling.values + scaling.count));
  return attr;
}

dnnl::primitive_attr PooledScratchpad() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

/** A weight in the layout `wanted`, filled by `fill`: kept under `key` (in `slot`) once asked for twice, else for this call only. */
static memory KeptOrMade(Context& context, Borrowed& borrowed, const memory::desc& wanted, const std::string& key, const std::string& slot,
                         const std::function<void(const memory&)>& fill) {
  if (!key.empty()) {
    if (memory* kept = context.weights.find(key)) return *kept;
    if (context.weights.seenBefore(key)) {
      memory made(wanted, context.engine);
      fill(made);
      return *context.weights.insert(key, made, wanted.get_size(), slot);
    }
  }
  memory made = borrowed.Memory(wanted, context.engine);
  fill(made);
  return made;
}

memory WeightsIn(Context& context, Borrowed& borrowed, const memory::desc& wanted, const memory::desc& user, float* data,
                 int64_t weightsId, const std::string& use) {
  memory given(user, context.engine, data);
  if (wanted == user) return given;
  std::string key = weightsId > 0 ? std::to_string(weightsId) + ":" + use + (context.bf16 ? ":bf16" : "") : "";
  return KeptOrMade(context, borrowed, wanted, key, "", [&](const memory& into) { Reorder(context, borrowed, given, into); });
}

memory FilterIn(Context& context, Borrowed& borrowed, const memory::desc& wanted, float* hwio, const ConvGeometry& g, int64_t weightsId,
                const char* use) {
  return WeightsIn(context, borrowed, wanted, g.Filter(), hwio, weightsId, std::string(use) + ":" + g.Key());
}

/** The layer's bfloat16 copy of the filter times its scale, plain and dense in `user`'s order: the step's first use narrows it. */
static memory Narrowed(Context& context, const memory::desc& user, const FilterArg& filter, int64_t outputs) {
  memory::desc narrowedDesc = PlainAs(user, memory::data_type::bf16);
  void* data = context.narrowedFilters.For(filter.scaleId, filter.id, narrowedDesc.get_size(), [&](void* empty) {
    memory given(user, context.engine, filter.hwio), narrowed(narrowedDesc, context.engine, empty);
    Scaling scaling{filter.scale, outputs, 0, filter.scaleId};
    Execute(context, ReorderBetween(context, user, narrowedDesc, scaling), {{DNNL_ARG_FROM, given}, {DNNL_ARG_TO, narrowed}});
  });
  return memory(narrowedDesc, context.engine, data);
}

memory NarrowedFilter(Context& context, const ConvGeometry& g, const FilterArg& filter) { return Narrowed(context, g.Filter(), filter, g.o); }

static bool NarrowsOnce(const memory::desc& wanted, const FilterArg& filter) {
  return wanted.data_type() == memory::data_type::bf16 && filter.id > 0 && filter.scaleId > 0;
}

/**
 * Fills `into` with the filter times its scale per output channel (dimension 0 of `user`; the reorder multiplies). In
 * bfloat16 through the layer's narrowed copy: the step's first pass narrows it, the others only re-lay it out.
 */
static void FillScaled(Context& context, Borrowed& borrowed, const memory& into, const memory::desc& user, const FilterArg& filter,
                       int64_t outputs) {
  if (!NarrowsOnce(into.get_desc(), filter)) {
    memory given(user, context.engine, filter.hwio);
    return Reorder(context, borrowed, given, into, {filter.scale, outputs, 0, filter.scaleId});
  }
  memory narrowed = Narrowed(context, user, filter, outputs);
  Execute(context, ReorderBetween(context, narrowed.get_desc(), into.get_desc(), {}), {{DNNL_ARG_FROM, narrowed}, {DNNL_ARG_TO, into}});
}

memory FilterAs(Context& context, Borrowed& borrowed, const memory::desc& wanted, const memory::desc& user, const FilterArg& filter,
                int64_t outputs, const std::string& use) {
  if (!filter.scale) return WeightsIn(context, borrowed, wanted, user, filter.hwio, filter.id, use);
  // A primitive that reads the plain narrowed copy reads the layer's own.
  if (NarrowsOnce(wanted, filter) && wanted == PlainAs(user, memory::data_type::bf16)) return Narrowed(context, user, filter, outputs);
  memory made = borrowed.Memory(wanted, context.engine);
  FillScaled(context, borrowed, made, user, filter, outputs);
  return made;
}

/**
 * The scaled filter in the forward layout. A trained filter is new every step; an evaluation reuses one, so with ids its
 * reorder is kept, one per layer (the scale's id names it).
 */
static memory ScaledFilter(Context& context, Borrowed& borrowed, const memory::desc& wanted, const FilterArg& filter, const ConvGeometry& g) {
  std::string slot = filter.scaleId > 0 ? "scaled:" + std::to_string(filter.scaleId) + ":fwd:" + g.Key() + (context.bf16 ? ":bf16" : "") : "";
  std::string key = filter.id > 0 && !slot.empty() ? std::to_string(filter.id) + ":" + slot : "";
  return KeptOrMade(context, borrowed, wanted, key, slot,
                    [&](const memory& into) { FillScaled(context, borrowed, into, g.Filter(), filter, g.o); });
}

/**
 * conv2d(x, filter, bias | null, out, geometry, relu, filterId, scale | null, scaleId): with a scale, the filter is multiplied
 * by it per output channel.
 */
Napi::Value Conv2D(const Napi::CallbackInfo& info) {
  return Guarded(info, "Conv2D", [&] {
    if (info.Length() != 10) throw std::invalid_argument("expects 10 arguments");
    ConvGeometry given = ConvGeometry::From(info[4]);
    bool bias = !info[2].IsNull();
    bool relu = info[5].ToBoolean();
    float* x = FloatData(info[0], given.SrcElements(), "x");
    LiveTaps live = WithoutDeadTaps(given);
    const ConvGeometry& g = live.g;
    float* filter = FloatData(info[1], given.WeightElements(), "filter") + live.offset;
    float* b = bias ? FloatData(info[2], size_t(g.o), "bias") : nullptr;
    float* out = FloatData(info[3], g.DstElements(), "out");
    const float* scale = info[7].IsNull() ? nullptr : FloatData(info[7], size_t(g.o), "scale");
    const float* residual = info[9].IsNull() ? nullptr : FloatData(info[9], g.DstElements(), "residual");
    Context& context = ContextOf(info.Env());
    Borrowed borrowed(context.buffers);
    FilterArg filterArg{filter, info[6].ToNumber().Int64Value(), scale, info[8].ToNumber().Int64Value()};
    if (RunsAsProduct(context, g, filterArg)) return ProductForward(context, borrowed, g, x, filterArg, b, residual, relu, out);
    if (SumsAsProduct(context, g, residual)) return PointwiseResidualForward(context, borrowed, g, x, filterArg, b, residual, relu, out);
    auto [primitive, pd] = Forward(context, g, bias, relu, residual);
    memory weights = scale ? ScaledFilter(context, borrowed, pd->weights_desc(), filterArg, g)
                           : FilterIn(context, borrowed, pd->weights_desc(), filter, g, filterArg.id, "fwd");
    std::unordered_map<int, memory> args{{DNNL_ARG_SRC, TensorIn(context, borrowed, pd->src_desc(), g.Src(), x)},
                                         {DNNL_ARG_WEIGHTS, weights},
                                         {DNNL_ARG_DST, memory(pd->dst_desc(), context.engine, out)},
                                         {DNNL_ARG_SCRATCHPAD, borrowed.Memory(pd->scratchpad_desc(), context.engine)}};
    if (bias) args.emplace(DNNL_ARG_BIAS, memory(pd->bias_desc(), context.engine, b));
    if (residual) HoldResidual(residual, out, g.DstElements());
    Execute(context, primitive, args);
  });
}

}  // namespace retrain
