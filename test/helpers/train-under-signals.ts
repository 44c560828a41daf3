// The child of test/engine/native/signals.test.ts: fp32 fine-tuning steps at 32 px (oneDNN's f32 GEMM kernels
// run in every backward pass) while the parent sends SIGUSR2. Prints "ready", trains, prints its counts as JSON,
// then exits when the parent closes its stdin (so no signal comes after the handler is gone).
import { once } from 'node:events';
import { setImmediate as toTheEventLoop } from 'node:timers/promises';
import * as tf from '../../engine/tf.js';
import { buildResNet50 } from '../../engine/model/resnet50.js';
import { useConvolutionPrecision } from '../../engine/native/kernels/register.js';
import { FusedAdamOptimizer } from '../../engine/training/adam.js';
import { trainStep } from '../../engine/training/train-step.js';
import { useTestBackend } from './tf.js';

let signals = 0;
process.on('SIGUSR2', () => signals++);
const backend = await useTestBackend();
useConvolutionPrecision('fp32');
const resnet = buildResNet50({
  mode: 'fine_tuning',
  numClasses: 4,
  inputSize: 32,
  fineTuning: { trainableFrom: 'conv1', freezeBatchNorm: true },
});
const images = tf.randomNormal<tf.Rank.R4>([16, 32, 32, 3], 0, 1, 'float32', 1);
const labels = tf.oneHot(
  tf.tensor1d(
    [...Array(16).keys()].map((i) => i % 4),
    'int32',
  ),
  4,
) as tf.Tensor2D;
const optimizer = new FusedAdamOptimizer(1e-3, 0.9, 0.999, 1e-8);
process.stdout.write('ready\n');
const losses: number[] = [];
for (let step = 0; step < Number(process.argv[2]); step++) {
  losses.push(trainStep(resnet.network, optimizer, images, labels).loss);
  // The signals' JavaScript handler runs here; the process took them in the kernels.
  await toTheEventLoop();
}
process.stdout.write(`${JSON.stringify({ kernels: backend.kernels, losses, signals })}\n`);
process.stdin.resume();
await once(process.stdin, 'end');
