// The gradients of a 1x1 convolution at stride 1 without padding, as the matrix products they are: in
// NHWC, x is a [P, C] matrix (P = N*H*W), the HWIO filter a [C, O] one and y = x W. oneDNN 2.6's
// convolution kernels for these shapes run bfloat16 at a third of the speed of its matmul.
#include "conv.h"

namespace retrain {

using dnnl::memory;
using tag = memory::format_tag;

bool IsPointwise(const ConvGeometry& g) {
  return g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.dh <= 1 && g.dw <= 1 && g.pt == 0 && g.pl == 0 && g.pb == 0 && g.pr == 0;
}

static memory::desc Matrix(int64_t rows, int64_t columns, memory::data_type type, tag layout) {
  return memory::desc({rows, columns}, type, layout);
}

/** dx [P, C] = dy [P, O] W^T, W^T being the [C, O] filter read with swapped strides. */
void PointwiseBackwardData(Context& context, Borrowed& borrowed, const ConvGeometry& g, float* dy, float* filter, float* dx,
                           int64_t filterId) {
  int64_t p = g.n * g.h * g.w;
  std::string key = "pointwise-bwd-data:" + g.Key() + (context.bf16 ? "bf16" : "");
  auto [primitive, pd] = Cached<dnnl::matmul>(context, key, [&] {
    auto desc = dnnl::matmul::desc(Matrix(p, g.o, Operand(context), tag::ab), Matrix(g.o, g.c, Operand(context), tag::any),
                                   Matrix(p, g.c, memory::data_type::f32, tag::ab));
    return dnnl::matmul::primitive_desc(desc, PooledScratchpad(), context.engine);
  });
  memory weights = WeightsIn(context, borrowed, pd->weights_desc(), Matrix(g.o, g.c, memory::data_type::f32, tag::ba), filter, filterId,
                             "pointwise-bwd-data:" + g.Key());
  primitive.execute(context.stream, {{DNNL_ARG_SRC, Converted(context, borrowed, pd->src_desc(), Matrix(p, g.o, memory::data_type::f32, tag::ab), dy)},
                                     {DNNL_ARG_WEIGHTS, weights},
                                     {DNNL_ARG_DST, memory(pd->dst_desc(), context.engine, dx)},
                                     {DNNL_ARG_SCRATCHPAD, borrowed.Memory(pd->scratchpad_desc(), context.engine)}});
}

/** dW [C, O] = x^T dy: x read transposed in place (bfloat16: converted in its own layout). */
void PointwiseBackwardWeights(Context& context, Borrowed& borrowed, const ConvGeometry& g, float* x, float* dy, float* dFilter) {
  int64_t p = g.n * g.h * g.w;
  std::string key = "pointwise-bwd-weights:" + g.Key() + (context.bf16 ? "bf16" : "");
  auto [primitive, pd] = Cached<dnnl::matmul>(context, key, [&] {
    auto desc = dnnl::matmul::desc(Matrix(g.c, p, Operand(context), tag::ba), Matrix(p, g.o, Operand(context), tag::ab),
                                   Matrix(g.c, g.o, memory::data_type::f32, tag::ab));
    return dnnl::matmul::primitive_desc(desc, PooledScratchpad(), context.engine);
  });
  primitive.execute(context.stream, {{DNNL_ARG_SRC, Converted(context, borrowed, pd->src_desc(), Matrix(g.c, p, memory::data_type::f32, tag::ba), x)},
                                     {DNNL_ARG_WEIGHTS, Converted(context, borrowed, pd->weights_desc(), Matrix(p, g.o, memory::data_type::f32, tag::ab), dy)},
                                     {DNNL_ARG_DST, memory(pd->dst_desc(), context.engine, dFilter)},
                                     {DNNL_ARG_SCRATCHPAD, borrowed.Memory(pd->scratchpad_desc(), context.engine)}});
}

}  // namespace retrain
