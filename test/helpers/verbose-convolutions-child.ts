// Runs 'same' convolutions (forward and both gradients, through the addon), each after a line naming it, with
// ONEDNN_VERBOSE set by the parent test, which reads what oneDNN ran from its log. argv[2]: the cases as JSON
// ([{ size, strides, channels, kernel? }]: a batch of 2 square inputs, 3x3 filters unless told); argv[3]: the precision
// (fp32 unless told). Prints one JSON line: each filter gradient's sums per tap.
import * as tf from '../../engine/tf.js';
import { selectBackend } from '../../engine/backend/backend.js';
import { SCALED_CONV } from '../../engine/native/kernels/conv2d.js';
import { nativeConvBackward } from '../../engine/native/kernels/conv-backward.js';
import { useConvolutionPrecision } from '../../engine/native/kernels/register.js';

await selectBackend('wasm', { nativeKernels: true });
const cases = JSON.parse(process.argv[2]) as Array<{ size: number; strides: number; channels: number; kernel?: number }>;
useConvolutionPrecision(process.argv[3] === 'bf16' ? 'bf16' : 'fp32');
const taps = cases.map(({ size, strides, channels, kernel = 3 }, i) =>
  tf.tidy(() => {
    console.log(`case ${i}`);
    const x = tf.randomNormal<tf.Rank.R4>([2, size, size, channels], 0, 1, 'float32', 1);
    const filter = tf.randomNormal<tf.Rank.R4>([kernel, kernel, channels, 8], 0, 1, 'float32', 2);
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
