// Runs a 3x3 'same' convolution (forward and both gradients, through the addon) on a 1x1 input, a 2x2 one at stride 2 and a 2x2
// one, each after a line naming it, with ONEDNN_VERBOSE set by the parent test, which reads what oneDNN ran from its log.
// Prints one JSON line: each filter gradient's sums per tap.
import * as tf from '../../engine/tf.js';
import { selectBackend } from '../../engine/backend/backend.js';
import { SCALED_CONV } from '../../engine/native/kernels/conv2d.js';
import { nativeConvBackward } from '../../engine/native/kernels/conv-backward.js';

await selectBackend('wasm', { nativeKernels: true });
const cases = [
  { size: 1, strides: 1 },
  { size: 2, strides: 2 },
  { size: 2, strides: 1 },
];
const taps = cases.map(({ size, strides }, i) =>
  tf.tidy(() => {
    console.log(`case ${i}`);
    const x = tf.randomNormal<tf.Rank.R4>([2, size, size, 16], 0, 1, 'float32', 1);
    const filter = tf.randomNormal<tf.Rank.R4>([3, 3, 16, 8], 0, 1, 'float32', 2);
    const scale = tf.randomUniform<tf.Rank.R1>([8], 0.5, 2, 'float32', 3);
    const attrs = { strides, pad: 'same' as const, dataFormat: 'NHWC' as const, dilations: 1, activation: 'linear' };
    const y = tf.engine().runKernel<tf.Tensor4D>(SCALED_CONV, { x, filter, scale }, attrs);
    const dy = tf.onesLike(y);
    const backward = { ...attrs, relu: false, inputGradient: true, filterGradient: true };
    const [, dFilter] = nativeConvBackward({ dy, y, x, filter, scale }, backward) ?? [];
    // |dW| summed per tap (kh, kw).
    return Array.from(tf.sum(tf.abs(dFilter), [2, 3]).dataSync());
  }),
);
console.log(`taps ${JSON.stringify(taps)}`);
