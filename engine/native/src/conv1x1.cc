// The gradients of a 1x1 convolution without padding, as the matrix products they are: in NHWC, the
// input pixels the convolution reads (every one at stride 1, every other row and column at stride 2)
// form a [P, C] matrix, the HWIO filter a [C, O] one, and y = x W. oneDNN 2.6's convolution kernels for
// these shapes run at a third of the speed of its matmul in bfloat16.
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

/** Copies float32 pixels between those a 1x1 convolution reads in an NHWC tensor and a dense [N, OH, OW, C] one. */
static void CopyPixels(const ConvGeometry& g, float* nhwc, float* dense, bool gather) {
  size_t pixelBytes = size_t(g.c) * sizeof(float);
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < g.n * g.oh; row++) {
    int64_t image = row / g.oh, i = row % g.oh;
    for (int64_t j = 0; j < g.ow; j++) {
      float* read = nhwc + ((image * g.h + i * g.sh) * g.w + j * g.sw) * g.c;
      float* packed = dense + (row * g.ow + j) * g.c;
      std::memcpy(gather ? packed : read, gather ? read : packed, pixelBytes);
    }
  }
}

static bool Strided(const ConvGeometry& g) { return g.sh != 1 || g.sw != 1; }

/** dx = dy W^T at the pixels read (zero elsewhere), W^T being the [C, O] filter read with swapped strides. */
void PointwiseBackwardData(Context& context, Borrowed& borrowed, const ConvGeometry& g, const memory& dz, const FilterArg& filter,
                           float* dx) {
  int64_t p = g.n * g.oh * g.ow;
  std::string key = "pointwise-bwd-data:" + g.Key() + (context.bf16 ? "bf16" : "");
  auto [primitive, pd] = Cached<dnnl::matmul>(context, key, [&] {
    auto desc = dnnl::matmul::desc(Matrix(p, g.o, Operand(context), tag::ab), Matrix(g.o, g.c, Operand(context), tag::any),
                                   Matrix(p, g.c, dt::f32, tag::ab));
    return dnnl::matmul::primitive_desc(desc, PooledScratchpad(), context.engine);
  });
  memory weights =
      FilterAs(context, borrowed, pd->weights_desc(), Matrix(g.o, g.c, dt::f32, tag::ba), filter, g.o, "pointwise-bwd-data:" + g.Key());
  memory product = Strided(g) ? borrowed.Memory(pd->dst_desc(), context.engine) : memory(pd->dst_desc(), context.engine, dx);
  Execute(context, primitive, {{DNNL_ARG_SRC, memory(pd->src_desc(), context.engine, dz.get_data_handle())},
                               {DNNL_ARG_WEIGHTS, weights},
                               {DNNL_ARG_DST, product},
                               {DNNL_ARG_SCRATCHPAD, borrowed.Memory(pd->scratchpad_desc(), context.engine)}});
  if (!Strided(g)) return;
  std::memset(dx, 0, g.SrcElements() * sizeof(float));
  CopyPixels(g, dx, static_cast<float*>(product.get_data_handle()), false);
}

/**
 * dW [C, O] = x^T dy (times the scale per column O, when there is one), x being the pixels read: in place at stride 1 in
 * float32, gathered (and converted) otherwise.
 */
void PointwiseBackwardWeights(Context& context, Borrowed& borrowed, const ConvGeometry& g, float* x, const memory& dz, float* dFilter,
                              const float* scale) {
  int64_t p = g.n * g.oh * g.ow;
  std::string key = "pointwise-bwd-weights:" + g.Key() + (context.bf16 ? "bf16" : "") + (scale ? ":scaled" : "");
  auto [primitive, pd] = Cached<dnnl::matmul>(context, key, [&] {
    auto desc = dnnl::matmul::desc(Matrix(g.c, p, Operand(context), tag::ba), Matrix(p, g.o, Operand(context), tag::ab),
                                   Matrix(g.c, g.o, dt::f32, tag::ab));
    dnnl::primitive_attr attr = PooledScratchpad();
    if (scale) attr.set_output_scales(1 << 1, {DNNL_RUNTIME_F32_VAL});
    return dnnl::matmul::primitive_desc(desc, attr, context.engine);
  });
  float* read = x;
  if (Strided(g)) {
    read = static_cast<float*>(borrowed.Memory(Matrix(p, g.c, dt::f32, tag::ab), context.engine).get_data_handle());
    CopyPixels(g, x, read, true);
  }
  memory pixels = Converted(context, borrowed, Matrix(p, g.c, Operand(context), tag::ab), Matrix(p, g.c, dt::f32, tag::ab), read);
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, memory(pd->src_desc(), context.engine, pixels.get_data_handle())},
                                       {DNNL_ARG_WEIGHTS, memory(pd->weights_desc(), context.engine, dz.get_data_handle())},
                                       {DNNL_ARG_DST, memory(pd->dst_desc(), context.engine, dFilter)},
                                       {DNNL_ARG_SCRATCHPAD, borrowed.Memory(pd->scratchpad_desc(), context.engine)}};
  if (scale) {
    memory scales(memory::desc({g.o}, dt::f32, tag::x), context.engine, const_cast<float*>(scale));
    args.emplace(DNNL_ARG_ATTR_OUTPUT_SCALES, scales);
  }
  Execute(context, primitive, args);
}

}  // namespace retrain
