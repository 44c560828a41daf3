// Convolution gradients as the matrix products they are, where oneDNN 2.6's convolution kernels are slow for the shape. A 1x1
// convolution without padding: in NHWC, the input pixels it reads (every one at stride 1, every other row and column at
// stride 2) form a [P, C] matrix, the HWIO filter a [C, O] one, and y = x W (its kernels ran at a third of the speed of the
// matmul in bfloat16). Any filter on few output pixels: dW = patches^T dy, the patches gathered as im2col does.
#include "conv.h"
#include <cstring>

namespace retrain {

using dnnl::memory;
using tag = memory::format_tag;
using dt = memory::data_type;

bool IsPointwise(const ConvGeometry& g) {
  return g.kh == 1 && g.kw == 1 && g.dh <= 1 && g.dw <= 1 && g.pt == 0 && g.pl == 0 && g.pb == 0 && g.pr == 0;
}

static memory::desc Matrix(int64_t rows, int64_t columns, dt type, tag layout) { return memory::desc({rows, columns}, type, layout); }

/** Writes (or with `add`, adds) a dense [N, OH, OW, C] float32 tensor into the pixels a 1x1 convolution reads in an NHWC one. */
static void ScatterPixels(const ConvGeometry& g, const float* dense, float* nhwc, bool add) {
  size_t pixelBytes = size_t(g.c) * sizeof(float);
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < g.n * g.oh; row++) {
    int64_t image = row / g.oh, i = row % g.oh;
    for (int64_t j = 0; j < g.ow; j++) {
      float* out = nhwc + ((image * g.h + i * g.sh) * g.w + j * g.sw) * g.c;
      const float* in = dense + (row * g.ow + j) * g.c;
      if (!add) {
        std::memcpy(out, in, pixelBytes);
        continue;
      }
      for (int64_t channel = 0; channel < g.c; channel++) out[channel] += in[channel];
    }
  }
}

/**
 * The [P, KH * KW * C] matrix of the input pixels each output pixel's filter taps read (zero where they read padding),
 * rows in output order, columns in HWI order: x's patches, so that dW = patches^T dy (for a 1x1 filter, the pixels it reads).
 */
static void GatherPatches(const ConvGeometry& g, const float* x, float* patches) {
  int64_t rowLength = g.kh * g.kw * g.c;
  size_t pixelBytes = size_t(g.c) * sizeof(float);
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < g.n * g.oh * g.ow; row++) {
    int64_t image = row / (g.oh * g.ow), i = row / g.ow % g.oh, j = row % g.ow;
    float* out = patches + row * rowLength;
    for (int64_t a = 0; a < g.kh; a++) {
      int64_t at = i * g.sh - g.pt + a * g.dh;
      for (int64_t b = 0; b < g.kw; b++, out += g.c) {
        int64_t across = j * g.sw - g.pl + b * g.dw;
        if (at < 0 || at >= g.h || across < 0 || across >= g.w) std::memset(out, 0, pixelBytes);
        else std::memcpy(out, x + ((image * g.h + at) * g.w + across) * g.c, pixelBytes);
      }
    }
  }
}

/** dx: each output pixel's row of `patches` summed into the input pixels its taps read (GatherPatches' adjoint). */
static void ScatterAddPatches(const ConvGeometry& g, const float* patches, float* dx) {
  int64_t rowLength = g.kh * g.kw * g.c;
  // An image's pixels take sums from its own output pixels only: one image a thread, nothing shared.
#pragma omp parallel for schedule(static)
  for (int64_t image = 0; image < g.n; image++) {
    float* own = dx + image * g.h * g.w * g.c;
    std::memset(own, 0, size_t(g.h * g.w * g.c) * sizeof(float));
    for (int64_t i = 0; i < g.oh; i++)
      for (int64_t j = 0; j < g.ow; j++) {
        const float* in = patches + ((image * g.oh + i) * g.ow + j) * rowLength;
        for (int64_t a = 0; a < g.kh; a++) {
          int64_t at = i * g.sh - g.pt + a * g.dh;
          for (int64_t b = 0; b < g.kw; b++, in += g.c) {
            int64_t across = j * g.sw - g.pl + b * g.dw;
            if (at < 0 || at >= g.h || across < 0 || across >= g.w) continue;
            float* out = own + (at * g.w + across) * g.c;
            for (int64_t channel = 0; channel < g.c; channel++) out[channel] += in[channel];
          }
        }
      }
  }
}

bool Strided(const ConvGeometry& g) { return g.sh != 1 || g.sw != 1; }

/**
 * In bfloat16 the matmul reads the layer's narrowed filter copy as it lies (W^T is the plain HWIO [C, O] matrix): no
 * re-layout per step (an epoch of the 32 px layer3 job: 150 ms less in oneDNN, at 112 px 125 ms less). In float32 the
 * scale needs a pass anyway, and at 112 px the matmul ran 6% slower on plain weights: oneDNN picks their layout there.
 */
static tag PlainInBfloat16(const Context& context) { return context.bf16 ? tag::ba : tag::any; }

/** The bytes of a convolution's [P, KH * KW * C] float32 patches (GatherPatches), bounded wherever they are made. */
static size_t PatchBytes(const ConvGeometry& g) { return size_t(g.n * g.oh * g.ow * g.kh * g.kw * g.c) * sizeof(float); }

/** A 1x1 convolution at stride 1 reads every pixel once: x itself is its patches. */
static bool PatchesAreInput(const ConvGeometry& g) { return IsPointwise(g) && !Strided(g); }

/** The float32 [P, KH * KW * C] patches the convolution reads: x as it lies where PatchesAreInput, else gathered. */
static float* PatchesOf(Context& context, Borrowed& borrowed, const ConvGeometry& g, float* x) {
  if (PatchesAreInput(g)) return x;
  memory patches = borrowed.Memory(Matrix(g.n * g.oh * g.ow, g.kh * g.kw * g.c, dt::f32, tag::ab), context.engine);
  GatherPatches(g, x, static_cast<float*>(patches.get_data_handle()));
  return static_cast<float*>(patches.get_data_handle());
}

bool RunsAsProduct(const Context& context, const ConvGeometry& g, const FilterArg& filter) {
  return context.bf16 && filter.scale && filter.id > 0 && filter.scaleId > 0 && g.oh * g.ow <= 16 &&
         (PatchesAreInput(g) || PatchBytes(g) <= (64u << 20));
}

/**
 * y = patches W (+ bias, then ReLU), W being the layer's narrowed [KH * KW * C, O] copy as it lies, the patches those of
 * PatchBackwardWeights (x itself for a 1x1 filter at stride 1). A trained filter is new every step: as a convolution it
 * was re-laid out every step (~6 ms a step of the 32 px layer3 job for the 1x1 filters), and the input gradient reads the
 * same copy.
 */
void ProductForward(Context& context, Borrowed& borrowed, const ConvGeometry& g, float* x, const FilterArg& filter, const float* bias,
                    const float* residual, bool relu, float* out) {
  int64_t p = g.n * g.oh * g.ow, k = g.kh * g.kw * g.c;
  std::string key = "product-fwd:" + g.Key() + (bias ? "b" : "") + (residual ? "s" : "") + (relu ? "r" : "");
  auto [primitive, pd] = Cached<dnnl::matmul>(context, key, [&] {
    memory::desc src = Matrix(p, k, dt::bf16, tag::ab), weights = Matrix(k, g.o, dt::bf16, tag::ab), dst = Matrix(p, g.o, dt::f32, tag::ab);
    auto desc = bias ? dnnl::matmul::desc(src, weights, Matrix(1, g.o, dt::f32, tag::ab), dst) : dnnl::matmul::desc(src, weights, dst);
    return dnnl::matmul::primitive_desc(desc, EpilogueAttr(residual, relu), context.engine);
  });
  std::unordered_map<int, memory> args{
      {DNNL_ARG_SRC, Converted(context, borrowed, pd->src_desc(), Matrix(p, k, dt::f32, tag::ab), PatchesOf(context, borrowed, g, x))},
      {DNNL_ARG_WEIGHTS, memory(pd->weights_desc(), context.engine, NarrowedFilter(context, g, filter).get_data_handle())},
      {DNNL_ARG_DST, memory(pd->dst_desc(), context.engine, out)},
      {DNNL_ARG_SCRATCHPAD, borrowed.Memory(pd->scratchpad_desc(), context.engine)}};
  if (bias) args.emplace(DNNL_ARG_BIAS, memory(pd->bias_desc(), context.engine, const_cast<float*>(bias)));
  if (residual) HoldResidual(residual, out, size_t(p * g.o));
  Execute(context, primitive, args);
}

bool SumsAsProduct(const Context& context, const ConvGeometry& g, const float* residual) {
  return residual && !context.bf16 && PatchesAreInput(g);
}

/**
 * In float32, a block's last 1x1 convolution with its residual: y = x W (times the scale per column O) + bias + residual, then
 * ReLU, as a matmul whose binary-add post-op reads the residual where it lies. The convolution's sum post-op needs the residual
 * copied into the output first (a pass over every block's output, ~4-5 ms of a 112 px step), and with a binary add oneDNN 2.6's
 * convolution left its brgemm kernel (20% slower on layer1's shape); the matmul keeps its own.
 */
void PointwiseResidualForward(Context& context, Borrowed& borrowed, const ConvGeometry& g, float* x, const FilterArg& filter,
                              const float* bias, const float* residual, bool relu, float* out) {
  int64_t p = g.n * g.oh * g.ow;
  memory::desc plain = Matrix(p, g.o, dt::f32, tag::ab);
  std::string key = "pointwise-residual-fwd:" + g.Key() + (bias ? "b" : "") + (relu ? "r" : "");
  auto [primitive, pd] = Cached<dnnl::matmul>(context, key, [&] {
    memory::desc src = Matrix(p, g.c, dt::f32, tag::ab), weights = Matrix(g.c, g.o, dt::f32, tag::any);
    auto desc = bias ? dnnl::matmul::desc(src, weights, Matrix(1, g.o, dt::f32, tag::ab), plain) : dnnl::matmul::desc(src, weights, plain);
    dnnl::post_ops ops;
    ops.append_binary(dnnl::algorithm::binary_add, plain);
    if (relu) ops.append_eltwise(1.f, dnnl::algorithm::eltwise_relu, 0.f, 0.f);
    dnnl::primitive_attr attr = PooledScratchpad();
    attr.set_post_ops(ops);
    return dnnl::matmul::primitive_desc(desc, attr, context.engine);
  });
  // The HWIO 1x1 filter is the [C, O] matrix as it lies; its scale is per column.
  memory::desc user = Matrix(g.c, g.o, dt::f32, tag::ab);
  memory weights = filter.scale ? borrowed.Memory(pd->weights_desc(), context.engine)
                                : WeightsIn(context, borrowed, pd->weights_desc(), user, filter.hwio, filter.id, key);
  if (filter.scale) Reorder(context, borrowed, memory(user, context.engine, filter.hwio), weights, {filter.scale, g.o, 1, filter.scaleId});
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, memory(pd->src_desc(), context.engine, x)},
                                       {DNNL_ARG_WEIGHTS, weights},
                                       {DNNL_ARG_DST, memory(plain, context.engine, out)},
                                       {DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1, memory(plain, context.engine, const_cast<float*>(residual))},
                                       {DNNL_ARG_SCRATCHPAD, borrowed.Memory(pd->scratchpad_desc(), context.engine)}};
  if (bias) args.emplace(DNNL_ARG_BIAS, memory(pd->bias_desc(), context.engine, const_cast<float*>(bias)));
  Execute(context, primitive, args);
}

/**
 * dx from d(patches) = dz W^T, W^T being the layer's narrowed [KH * KW * C, O] copy read across: as a convolution the copy
 * was re-laid out every step for the input gradient too.
 */
void PatchBackwardData(Context& context, Borrowed& borrowed, const ConvGeometry& g, const memory& dz, const FilterArg& filter, float* dx) {
  int64_t p = g.n * g.oh * g.ow, k = g.kh * g.kw * g.c;
  auto [primitive, pd] = Cached<dnnl::matmul>(context, "patch-bwd-data:" + g.Key(), [&] {
    auto desc = dnnl::matmul::desc(Matrix(p, g.o, dt::bf16, tag::ab), Matrix(g.o, k, dt::bf16, tag::ba), Matrix(p, k, dt::f32, tag::ab));
    return dnnl::matmul::primitive_desc(desc, PooledScratchpad(), context.engine);
  });
  memory patches = borrowed.Memory(pd->dst_desc(), context.engine);
  Execute(context, primitive,
          {{DNNL_ARG_SRC, memory(pd->src_desc(), context.engine, dz.get_data_handle())},
           {DNNL_ARG_WEIGHTS, memory(pd->weights_desc(), context.engine, NarrowedFilter(context, g, filter).get_data_handle())},
           {DNNL_ARG_DST, patches},
           {DNNL_ARG_SCRATCHPAD, borrowed.Memory(pd->scratchpad_desc(), context.engine)}});
  ScatterAddPatches(g, static_cast<const float*>(patches.get_data_handle()), dx);
}

/** dx = dy W^T at the pixels read (zero elsewhere), W^T being the [C, O] filter read with swapped strides. */
void PointwiseBackwardData(Context& context, Borrowed& borrowed, const ConvGeometry& g, const memory& dz, const FilterArg& filter,
                           float* dx, bool accumulate) {
  int64_t p = g.n * g.oh * g.ow;
  // At stride 1 the product adds itself to dx (a sum post-op); at stride 2 its scatter adds it to the pixels it read.
  bool sumInProduct = accumulate && !Strided(g);
  std::string key = "pointwise-bwd-data:" + g.Key() + (context.bf16 ? "bf16" : "") + (sumInProduct ? ":sum" : "");
  auto [primitive, pd] = Cached<dnnl::matmul>(context, key, [&] {
    auto desc = dnnl::matmul::desc(Matrix(p, g.o, Operand(context), tag::ab), Matrix(g.o, g.c, Operand(context), PlainInBfloat16(context)),
                                   Matrix(p, g.c, dt::f32, tag::ab));
    dnnl::primitive_attr attr = PooledScratchpad();
    dnnl::post_ops sum;
    sum.append_sum(1.f);
    if (sumInProduct) attr.set_post_ops(sum);
    return dnnl::matmul::primitive_desc(desc, attr, context.engine);
  });
  memory weights =
      FilterAs(context, borrowed, pd->weights_desc(), Matrix(g.o, g.c, dt::f32, tag::ba), filter, g.o, "pointwise-bwd-data:" + g.Key());
  memory product = Strided(g) ? borrowed.Memory(pd->dst_desc(), context.engine) : memory(pd->dst_desc(), context.engine, dx);
  Execute(context, primitive, {{DNNL_ARG_SRC, memory(pd->src_desc(), context.engine, dz.get_data_handle())},
                               {DNNL_ARG_WEIGHTS, weights},
                               {DNNL_ARG_DST, product},
                               {DNNL_ARG_SCRATCHPAD, borrowed.Memory(pd->scratchpad_desc(), context.engine)}});
  if (!Strided(g)) return;
  if (!accumulate) std::memset(dx, 0, g.SrcElements() * sizeof(float));
  ScatterPixels(g, static_cast<float*>(product.get_data_handle()), dx, accumulate);
}

/**
 * dW [K, O] = rows^T dz, times the filter's scale per column O when it has one: `rows` is a float32 [P, K] matrix (converted
 * to the kernels' type here), dz the [P, O] output gradient, `dst` the float32 [K, O] result. The scale is part of the
 * primitive, one per layer (its id names it): as a runtime argument oneDNN 2.6 left its brgemm kernels for gemm:jit, which in
 * bfloat16 on AMX ran these products 1.3-2.3x slower (in float32 the two ran alike).
 */
static void TransposedProduct(Context& context, Borrowed& borrowed, const std::string& key, int64_t p, int64_t k, int64_t o, float* rows,
                              const memory& dz, float* dst, const FilterArg& filter) {
  if (filter.scale && filter.scaleId <= 0) throw std::invalid_argument("a scale needs its id");
  std::string scaled = filter.scale ? ":scaled:" + std::to_string(filter.scaleId) : "";
  auto [primitive, pd] = Cached<dnnl::matmul>(context, key + (context.bf16 ? "bf16" : "") + scaled, [&] {
    auto desc = dnnl::matmul::desc(Matrix(k, p, Operand(context), tag::ba), Matrix(p, o, Operand(context), tag::ab),
                                   Matrix(k, o, dt::f32, tag::ab));
    dnnl::primitive_attr attr = PooledScratchpad();
    if (filter.scale) attr.set_output_scales(1 << 1, std::vector<float>(filter.scale, filter.scale + o));
    return dnnl::matmul::primitive_desc(desc, attr, context.engine);
  });
  memory converted = Converted(context, borrowed, Matrix(p, k, Operand(context), tag::ab), Matrix(p, k, dt::f32, tag::ab), rows);
  Execute(context, primitive,
          {{DNNL_ARG_SRC, memory(pd->src_desc(), context.engine, converted.get_data_handle())},
           {DNNL_ARG_WEIGHTS, memory(pd->weights_desc(), context.engine, dz.get_data_handle())},
           {DNNL_ARG_DST, memory(pd->dst_desc(), context.engine, dst)},
           {DNNL_ARG_SCRATCHPAD, borrowed.Memory(pd->scratchpad_desc(), context.engine)}});
}

/**
 * dW [C, O] = x^T dy (times the scale per column O, when there is one), x being the pixels read: in place at stride 1 in
 * float32, gathered (and converted) otherwise.
 */
void PointwiseBackwardWeights(Context& context, Borrowed& borrowed, const ConvGeometry& g, float* x, const memory& dz, float* dFilter,
                              const FilterArg& filter) {
  int64_t p = g.n * g.oh * g.ow;
  TransposedProduct(context, borrowed, "pointwise-bwd-weights:" + g.Key(), p, g.c, g.o, PatchesOf(context, borrowed, g, x), dz, dFilter, filter);
}

/**
 * Measured per ResNet-50 shape at 32-224 px, batch 16 (AVX512-BF16 EPYC, fp32 and bf16): with few output pixels per image
 * the product ran 1.2-7x faster than oneDNN 2.6's backward-weights convolution (4x4 or fewer, or 7x7 from a stride-2
 * filter, at 128+ channels); with more pixels or fewer channels it lost by up to 4x. The patches' bytes are bounded too.
 */
bool FitsPatchProduct(const ConvGeometry& g) {
  int64_t pixels = g.oh * g.ow;
  bool few = pixels <= 16 || (pixels <= 49 && (g.sh > 1 || g.sw > 1));
  return few && g.c >= 128 && PatchBytes(g) <= (64u << 20);
}

/**
 * dW [KH * KW * C, O] = patches^T dy (times the scale per column O): the HWIO filter's own rows, written in place unless the
 * filter is wider than its kept taps (then a row of taps at a time, from a dense copy).
 */
void PatchBackwardWeights(Context& context, Borrowed& borrowed, const ConvGeometry& g, float* x, const memory& dz, float* dFilter,
                          const FilterArg& filter) {
  int64_t p = g.n * g.oh * g.ow, k = g.kh * g.kw * g.c;
  float* patches = PatchesOf(context, borrowed, g, x);
  bool dense = g.filterKw == g.kw;
  float* product =
      dense ? dFilter : static_cast<float*>(borrowed.Memory(Matrix(k, g.o, dt::f32, tag::ab), context.engine).get_data_handle());
  TransposedProduct(context, borrowed, "patch-bwd-weights:" + g.Key(), p, k, g.o, patches, dz, product, filter);
  if (dense) return;
  size_t tapRow = size_t(g.kw * g.c * g.o);
  for (int64_t a = 0; a < g.kh; a++) std::memcpy(dFilter + a * g.filterKw * g.c * g.o, product + a * tapRow, tapRow * sizeof(float));
}

}  // namespace retrain
