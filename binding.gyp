{
  "targets": [
    {
      "target_name": "onednn_kernels",
      "sources": [
        "engine/native/src/addon.cc",
        "engine/native/src/context.cc",
        "engine/native/src/conv.cc",
        "engine/native/src/conv_matmul.cc",
        "engine/native/src/conv_backward.cc",
        "engine/native/src/conv2d_backprop_input.cc",
        "engine/native/src/conv2d_backprop_filter.cc",
        "engine/native/src/batch_mat_mul.cc",
        "engine/native/src/binary.cc",
        "engine/native/src/relu_grad.cc",
        "engine/native/src/add_relu.cc",
        "engine/native/src/pooling.cc",
        "engine/native/src/max_pool.cc",
        "engine/native/src/avg_pool_grad.cc",
        "engine/native/src/adam.cc",
        "engine/native/src/batch_norm.cc",
        "engine/native/src/int8_network.cc",
        "engine/native/src/transpose.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
      # -fno-trapping-math: nothing here reads floating-point exception flags, and without it GCC keeps a
      # branch in ReLU's masked gradient loops (a multiply it may not speculate), so they do not vectorise.
      "cflags_cc": ["-std=c++17", "-O3", "-fopenmp", "-ffp-contract=off", "-fno-math-errno", "-fno-trapping-math"],
      "ldflags": ["-fopenmp"],
      "libraries": ["-ldnnl"]
    }
  ]
}
