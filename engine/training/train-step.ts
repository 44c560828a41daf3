import * as tf from '../tf.js';
import type { Network } from '../model/network.js';
import { BATCH_NORM_TRAIN } from '../native/kernels/batch-norm.js';
import { tapeFreeKernels } from '../model/eager-resnet.js';

export interface StepResult {
  loss: number;
  correct: number;
}

export interface StepOptions {
  /** L2 penalty whose gradient is weightDecay * w, as torch.optim's weight_decay adds. */
  weightDecay?: number;
  labelSmoothing?: number;
  /**
   * Largest slice of the batch to run forward/backward at once; gradients of the slices are
   * averaged before one optimiser step. Keeps a batch within the wasm backend's 4 GiB heap.
   */
  microBatchSize?: number;
  /** Per-sample loss weights (class weights of the labels); the loss is their weighted mean. */
  sampleWeights?: readonly number[];
}

/**
 * One optimiser step on a batch (images, or CNN codes for a head alone): forward in training mode (dropout on, trainable BatchNorm on batch
 * statistics), softmax cross-entropy on the logits, gradients for the trainable weights only.
 */
export function trainStep(
  network: Network,
  optimizer: tf.Optimizer,
  inputs: tf.Tensor,
  oneHotLabels: tf.Tensor2D,
  options: StepOptions = {},
): StepResult {
  const variables = network.trainableWeights.map((w) => w.read() as tf.Variable);
  const batch = inputs.shape[0];
  const slice = Math.max(1, Math.min(options.microBatchSize ?? batch, batch));
  let lossSum = 0;
  let correct = 0;
  let summed: tf.NamedTensorMap | null = null;
  // Weights scaled to mean 1 over the whole batch, so slices add up to sum(w * loss) / sum(w).
  const weightSum = options.sampleWeights?.reduce((a, b) => a + b, 0) ?? batch;
  const normalised = options.sampleWeights?.map((w) => (w * batch) / weightSum);
  for (let start = 0; start < batch; start += slice) {
    const size = Math.min(slice, batch - start);
    const weight = size / batch;
    const x = slice === batch ? inputs : tf.slice(inputs, start, size);
    const y = slice === batch ? oneHotLabels : tf.slice(oneHotLabels, start, size);
    // The loss closure keeps the slice's predictions, so accuracy costs no second forward pass.
    const kept: { predicted: tf.Tensor1D | null } = { predicted: null };
    const lossOf = (outputs: tf.Tensor) => {
      const logits = outputs as tf.Tensor2D;
      kept.predicted = tf.keep(tf.argMax<tf.Tensor1D>(logits, 1));
      const weights = normalised ? tf.tensor1d(normalised.slice(start, start + size)) : undefined;
      const perSample = tf.losses.softmaxCrossEntropy(y, logits, undefined, options.labelSmoothing ?? 0, tf.Reduction.NONE);
      const crossEntropy = tf.mean<tf.Scalar>(weights ? tf.mul(perSample, weights) : perSample);
      const decay = options.weightDecay ?? 0;
      const loss = decay
        ? tf.add<tf.Scalar>(crossEntropy, tf.mul(tf.addN(variables.map((v) => tf.sum(tf.square(v)))), decay / 2))
        : crossEntropy;
      // The slice's share of the batch scales its loss, so its gradients arrive weighted (no multiply per variable).
      return weight === 1 ? loss : tf.mul<tf.Scalar>(loss, weight);
    };
    const { value, grads } = network.gradients
      ? network.gradients(x, lossOf, variables)
      : optimizer.computeGradients(() => lossOf(network.forward(x, true)), variables);
    const predicted = kept.predicted;
    if (!predicted) throw new Error('the loss function did not run');
    correct += tf.tidy(() => tf.sum(tf.cast(tf.equal(predicted, tf.argMax(y, 1)), 'int32')).dataSync()[0]);
    lossSum += value.dataSync()[0];
    const previous: tf.NamedTensorMap | null = summed;
    summed = previous
      ? tf.tidy(() => Object.fromEntries(Object.entries(grads).map(([name, gradient]) => [name, tf.add(previous[name], gradient)])))
      : grads;
    const carried = new Set(Object.values(summed));
    const spent = [...Object.values(grads), ...(previous ? Object.values(previous) : [])].filter((t) => !carried.has(t));
    tf.dispose([value, predicted, ...spent]);
    if (x !== inputs) tf.dispose([x, y]);
  }
  if (!summed) throw new Error('trainStep needs a batch of at least one image');
  optimizer.applyGradients(summed);
  tf.dispose(Object.values(summed));
  return { loss: lossSum, correct };
}

/**
 * Tensor bytes a training step holds per image, as a multiple of torchinfo's forward/backward estimate,
 * measured on the eager network at 112 and 224 px with room for the wasm allocator's fragmentation:
 * 0.26 with BatchNorm folded and the native kernels (the tape-free pass keeps each convolution's output once, BatchNorm
 * and ReLU in it, and frees it as its gradient is spent); 1.65 folded under tfjs' tape; with BatchNorm on batch
 * statistics 2.0 through the native kernel, 4.5 through tfjs' composed ops (each keeps what its gradient needs).
 */
export const WASM_ACTIVATION_FACTOR = { tapeFree: 0.5, folded: 2.5, batchStatistics: 3, composedBatchStatistics: 6 } as const;

export function activationFactor(batchNormTrains: boolean): number {
  if (!batchNormTrains) return tapeFreeKernels('wasm') ? WASM_ACTIVATION_FACTOR.tapeFree : WASM_ACTIVATION_FACTOR.folded;
  return tf.getKernel(BATCH_NORM_TRAIN, 'wasm') ? WASM_ACTIVATION_FACTOR.batchStatistics : WASM_ACTIVATION_FACTOR.composedBatchStatistics;
}

/**
 * Images per forward/backward slice that fit the wasm heap (4 GiB): the parameters with their
 * gradients and two Adam moments, 256 MiB of slack, and the activations of each image.
 */
export function wasmMicroBatchSize(forwardBackwardBytesPerImage: number, paramsBytes: number, batchNormTrains: boolean): number {
  const heap = 4 * 1024 ** 3;
  const free = heap - 4 * paramsBytes - 256 * 1024 ** 2;
  return Math.max(1, Math.floor(free / (activationFactor(batchNormTrains) * forwardBackwardBytesPerImage)));
}
