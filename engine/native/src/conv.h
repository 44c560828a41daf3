// What the three convolution kernels share: the geometry tfjs computed, and oneDNN descriptors for it.
// Tensors are NHWC and filters HWIO, as tfjs keeps them; oneDNN reads both in place.
#pragma once
#include "context.h"
#include <utility>

namespace retrain {

struct ConvGeometry {
  int64_t n, h, w, c, kh, kw, o, oh, ow, sh, sw, dh, dw, pt, pl, pb, pr;
  /** The width of the HWIO filter in memory: kw, or wider where dead taps are left out. */
  int64_t filterKw;

  /** From the Int32Array [N,H,W,C, KH,KW,O, OH,OW, SH,SW, DH,DW, PT,PL,PB,PR] (dilations as tfjs: 1 = none). */
  static ConvGeometry From(const Napi::Value& value);
  std::string Key() const;

  dnnl::memory::dims Src() const { return {n, c, h, w}; }
  dnnl::memory::dims Weights() const { return {o, c, kh, kw}; }
  /** The float32 HWIO filter as it lies in memory (the kept taps of a wider one, read with its strides). */
  dnnl::memory::desc Filter() const;
  dnnl::memory::dims Dst() const { return {n, o, oh, ow}; }
  dnnl::memory::dims Strides() const { return {sh, sw}; }
  dnnl::memory::dims Dilations() const { return {dh - 1, dw - 1}; }
  dnnl::memory::dims PadL() const { return {pt, pl}; }
  dnnl::memory::dims PadR() const { return {pb, pr}; }
  size_t SrcElements() const { return size_t(n * h * w * c); }
  size_t WeightElements() const { return size_t(kh * kw * c * o); }
  size_t DstElements() const { return size_t(n * oh * ow * o); }
};

/**
 * A convolution without the filter taps that read only padding, whatever the output (a 3x3 filter on a 1x1 input: all but
 * its centre): they add nothing, yet cost their share of every reorder and of the filter's memory traffic, and their
 * gradient is zero. The kept taps start `offset` floats into the HWIO filter (g.Filter() describes them there); with
 * dilation nothing is cropped and `g` is the caller's.
 */
struct LiveTaps {
  ConvGeometry g;
  size_t offset = 0;
  bool cropped = false;
  /** The first kept tap's row and column in the whole filter. */
  int64_t top = 0, left = 0;
};
LiveTaps WithoutDeadTaps(const ConvGeometry& g);

/** Where the kept taps' gradient goes in the whole filter's gradient `dFilter`, the rest of which is zeroed. */
float* LiveGradient(float* dFilter, const ConvGeometry& given, const LiveTaps& live);

/**
 * A filter as tfjs hands it over: HWIO float32 data (and an id for the addon's caches, 0: not to be kept), times a
 * scale per output channel when there is one (a folded BatchNorm's; its id names the layer).
 */
struct FilterArg {
  float* hwio;
  int64_t id = 0;
  const float* scale = nullptr;
  int64_t scaleId = 0;
};

/** What convolutions read: float32, or bfloat16 when the context says so. */
dnnl::memory::data_type Operand(const Context& context);
dnnl::memory::desc Nhwc(const dnnl::memory::dims& dims, dnnl::memory::data_type type = dnnl::memory::data_type::f32);
dnnl::memory::desc AnyLayout(const dnnl::memory::dims& dims, dnnl::memory::data_type type = dnnl::memory::data_type::f32);

/**
 * A multiplication per output channel a reorder applies as it writes: `values` along `dimension` (0 of {O, I, H, W} and of
 * [O, C], 1 of [C, O]), named by `id` (a folded BatchNorm's scale tensor) so its reorder can be kept; none when null.
 */
struct Scaling {
  const float* values = nullptr;
  int64_t count = 0;
  int dimension = 0;
  int64_t id = 0;
};

/**
 * given into wanted (another type or layout, times a scaling), through a plain narrower copy where that is faster. The
 * reorders are kept per pair of layouts (and scaling id): made anew, a step's ~70 cost ~10 us each outside the primitives.
 */
void Reorder(Context& context, Borrowed& borrowed, const dnnl::memory& given, const dnnl::memory& wanted, const Scaling& scaling = {});

/** The caller's float32 data laid out as `user` says, as `wanted` describes it: itself, or a converted copy for this call. */
dnnl::memory Converted(Context& context, Borrowed& borrowed, const dnnl::memory::desc& wanted, const dnnl::memory::desc& user, float* data);

/** The caller's float32 NHWC tensor as `wanted` describes it: itself, or a converted copy for this call. */
dnnl::memory TensorIn(Context& context, Borrowed& borrowed, const dnnl::memory::desc& wanted, const dnnl::memory::dims& dims, float* data);

/**
 * The forward convolution of a geometry (its descriptor is also the hint the backward ones need); with `residual`, a tensor
 * shaped as the output is added before the ReLU (a bottleneck block's sum, in the epilogue).
 */
std::pair<dnnl::primitive, const dnnl::convolution_forward::primitive_desc*> Forward(Context& context, const ConvGeometry& g, bool bias,
                                                                                            bool relu, bool residual = false);

/** Scratchpad from the pool, and the epilogue: + what the output holds (the residual, copied in by HoldResidual), then ReLU. */
dnnl::primitive_attr EpilogueAttr(bool residual, bool relu);

/** The residual copied into the output for EpilogueAttr's sum: with a binary add instead, oneDNN 2.6 left its brgemm kernels. */
void HoldResidual(const float* residual, float* out, size_t elements);

/**
 * A filter in the layout `wanted`: the caller's HWIO memory when that is it, otherwise a reorder of it,
 * kept under `weightsId` (0: not kept) so unchanged filters are reordered once.
 */
dnnl::memory FilterIn(Context& context, Borrowed& borrowed, const dnnl::memory::desc& wanted, float* hwio, const ConvGeometry& g,
                      int64_t weightsId, const char* use);

/**
 * The filter (`user` describes its HWIO data, with O as dimension 0) times its scale, in the layout `wanted`, for this call.
 * Without a scale, as WeightsIn.
 */
dnnl::memory FilterAs(Context& context, Borrowed& borrowed, const dnnl::memory::desc& wanted, const dnnl::memory::desc& user,
                      const FilterArg& filter, int64_t outputs, const std::string& use);

/** Weights laid out as `user` says, in the layout `wanted`: kept under `weightsId` (0: not kept) and `use` once seen twice. */
dnnl::memory WeightsIn(Context& context, Borrowed& borrowed, const dnnl::memory::desc& wanted, const dnnl::memory::desc& user, float* data,
                       int64_t weightsId, const std::string& use);

/** Whether a convolution is a 1x1 without padding (any stride): a matrix product over the pixels it reads. */
bool IsPointwise(const ConvGeometry& g);
bool Strided(const ConvGeometry& g);

/**
 * The gradients from dz, the gradient at the output already in the kernels' type (NHWC): dx through the filter (times its
 * scale), added to what dx holds when `accumulate`; and dW in HWIO; with a scale, the forward pass used filter * scale, and dW
 * is times the scale too (the filter's own).
 */
void BackwardData(Context& context, Borrowed& borrowed, const ConvGeometry& g, const dnnl::memory& dz, const FilterArg& filter, float* dx,
                  bool accumulate = false);
void BackwardWeights(Context& context, Borrowed& borrowed, const ConvGeometry& g, float* x, const dnnl::memory& dz, float* dFilter,
                     const FilterArg& filter);
/**
 * With `accumulate`, the product is added to what dx holds: by the matmul's sum post-op at stride 1, by the scatter into the
 * pixels read at stride 2 (no pass over the others).
 */
void PointwiseBackwardData(Context& context, Borrowed& borrowed, const ConvGeometry& g, const dnnl::memory& dz, const FilterArg& filter,
                           float* dx, bool accumulate);
void PointwiseBackwardWeights(Context& context, Borrowed& borrowed, const ConvGeometry& g, float* x, const dnnl::memory& dz, float* dFilter,
                              const FilterArg& filter);

/** The layer's bfloat16 copy of its scaled filter (kept taps only), dense HWIO: the [KH * KW * C, O] matrix. */
dnnl::memory NarrowedFilter(Context& context, const ConvGeometry& g, const FilterArg& filter);

/**
 * Whether the forward pass and the input gradient run as matrix products of the patches with the layer's plain bfloat16
 * filter copy (ProductForward, PatchBackwardData): a bfloat16 convolution with a scaled filter on few output pixels.
 */
bool RunsAsProduct(const Context& context, const ConvGeometry& g, const FilterArg& filter);
void ProductForward(Context& context, Borrowed& borrowed, const ConvGeometry& g, float* x, const FilterArg& filter, const float* bias,
                    const float* residual, bool relu, float* out);
void PatchBackwardData(Context& context, Borrowed& borrowed, const ConvGeometry& g, const dnnl::memory& dz, const FilterArg& filter,
                       float* dx);

/** Whether the forward pass with a residual runs as PointwiseResidualForward: a float32 1x1 convolution at stride 1. */
bool SumsAsProduct(const Context& context, const ConvGeometry& g, const float* residual);
void PointwiseResidualForward(Context& context, Borrowed& borrowed, const ConvGeometry& g, float* x, const FilterArg& filter,
                              const float* bias, const float* residual, bool relu, float* out);

/** Whether dW as patches^T dy (PatchBackwardWeights) beats oneDNN's convolution for this geometry. */
bool FitsPatchProduct(const ConvGeometry& g);
void PatchBackwardWeights(Context& context, Borrowed& borrowed, const ConvGeometry& g, float* x, const dnnl::memory& dz, float* dFilter,
                          const FilterArg& filter);

/** A reorder's attributes that multiply what it writes by the scaling's values (none: plain attributes). */
dnnl::primitive_attr ScalePerOutput(const Scaling& scaling);

/** Primitive attributes every convolution shares: scratchpads come from the pool. */
dnnl::primitive_attr PooledScratchpad();

}  // namespace retrain
