// BatchMatMul and _FusedMatMul (bias, ReLU): the fully connected layers and their gradients.
#include "context.h"
#include <sstream>

namespace retrain {

using dnnl::memory;

/** matMul(a, b, bias | null, out, dims [B, M, K, N, transposeA, transposeB], relu) */
Napi::Value MatMul(const Napi::CallbackInfo& info) {
  return Guarded(info, "BatchMatMul", [&] {
    if (info.Length() != 6) throw std::invalid_argument("expects 6 arguments");
    const int32_t* d = IntData(info[4], 6, "dims");
    int64_t batch = d[0], m = d[1], k = d[2], n = d[3];
    bool transposeA = d[4] != 0, transposeB = d[5] != 0;
    if (batch == 0 || m == 0 || k == 0 || n == 0) throw std::invalid_argument("dims has a zero size");
    bool bias = !info[2].IsNull();
    bool relu = info[5].ToBoolean();
    float* a = FloatData(info[0], size_t(batch * m * k), "a");
    float* b = FloatData(info[1], size_t(batch * k * n), "b");
    float* biasData = bias ? FloatData(info[2], size_t(n), "bias") : nullptr;
    float* out = FloatData(info[3], size_t(batch * m * n), "out");
    Context& context = ContextOf(info.Env());
    std::ostringstream key;
    key << "matmul:" << batch << ',' << m << ',' << k << ',' << n << ',' << transposeA << transposeB << bias << relu;
    // A transposed operand is the same bytes read with swapped strides.
    memory::desc aDesc({batch, m, k}, memory::data_type::f32, transposeA ? memory::dims{m * k, 1, m} : memory::dims{m * k, k, 1});
    memory::desc bDesc({batch, k, n}, memory::data_type::f32, transposeB ? memory::dims{k * n, 1, k} : memory::dims{k * n, n, 1});
    memory::desc outDesc({batch, m, n}, memory::data_type::f32, memory::format_tag::abc);
    memory::desc biasDesc({1, 1, n}, memory::data_type::f32, memory::format_tag::abc);
    auto primitive = Cached<dnnl::matmul>(context, key.str(), [&] {
      dnnl::post_ops ops;
      if (relu) ops.append_eltwise(1.f, dnnl::algorithm::eltwise_relu, 0.f, 0.f);
      dnnl::primitive_attr attr;
      attr.set_post_ops(ops);
      auto desc = bias ? dnnl::matmul::desc(aDesc, bDesc, biasDesc, outDesc) : dnnl::matmul::desc(aDesc, bDesc, outDesc);
      return dnnl::matmul::primitive_desc(desc, attr, context.engine);
    }).first;
    std::unordered_map<int, memory> args{{DNNL_ARG_SRC, memory(aDesc, context.engine, a)},
                                         {DNNL_ARG_WEIGHTS, memory(bDesc, context.engine, b)},
                                         {DNNL_ARG_DST, memory(outDesc, context.engine, out)}};
    if (bias) args.emplace(DNNL_ARG_BIAS, memory(biasDesc, context.engine, biasData));
    Execute(context, primitive, args);
  });
}

}  // namespace retrain
