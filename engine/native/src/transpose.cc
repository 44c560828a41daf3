// Transpose: a permutation of axes is a reorder between two plain layouts of the same values. tfjs' wasm
// kernel moved ~75 M floats a second, so converting a model to torchvision's layout (every filter HWIO to
// OIHW, when weights are saved as safetensors or loaded from torchvision) took ~0.3 s of a job.
#include "context.h"
#include <algorithm>

namespace retrain {

using dnnl::memory;

/** Row-major strides of a dense tensor of `dims`. */
static memory::dims DenseStrides(const memory::dims& dims) {
  memory::dims strides(dims.size());
  int64_t step = 1;
  for (size_t i = dims.size(); i-- > 0;) {
    strides[i] = step;
    step *= dims[i];
  }
  return strides;
}

/** transpose(x, out, shape, perm): out has x's axes in perm's order (out.shape[i] = shape[perm[i]]); float32, rank 1-6. */
Napi::Value Transpose(const Napi::CallbackInfo& info) {
  return Guarded(info, "Transpose", [&] {
    if (info.Length() != 4 || !info[2].IsTypedArray()) throw std::invalid_argument("expects (x, out, shape, perm)");
    size_t rank = info[2].As<Napi::TypedArray>().ElementLength();
    if (rank == 0 || rank > 6) throw std::invalid_argument("shape must have 1 to 6 dimensions");
    const int32_t* shape = IntData(info[2], rank, "shape");
    const int32_t* perm = IntData(info[3], rank, "perm");
    memory::dims dims(shape, shape + rank), outDims(rank), readStrides(rank);
    if (std::any_of(dims.begin(), dims.end(), [](int64_t d) { return d <= 0; })) {
      throw std::invalid_argument("shape has a dimension that is not positive");
    }
    memory::dims strides = DenseStrides(dims);
    std::vector<bool> taken(rank, false);
    for (size_t i = 0; i < rank; i++) {
      int32_t axis = perm[i];
      if (axis < 0 || size_t(axis) >= rank || taken[size_t(axis)]) throw std::invalid_argument("perm is not a permutation of the axes");
      taken[size_t(axis)] = true;
      outDims[i] = shape[axis];
      readStrides[i] = strides[size_t(axis)];
    }
    size_t elements = size_t(strides[0] * dims[0]);
    float* x = FloatData(info[0], elements, "x");
    float* out = FloatData(info[1], elements, "out");
    Context& context = ContextOf(info.Env());
    memory from(memory::desc(outDims, memory::data_type::f32, readStrides), context.engine, x);
    memory to(memory::desc(outDims, memory::data_type::f32, DenseStrides(outDims)), context.engine, out);
    Execute(context, dnnl::reorder(from, to), from, to);
  });
}

}  // namespace retrain
