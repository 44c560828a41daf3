import * as tf from '@tensorflow/tfjs';

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
  model: tf.LayersModel,
  optimizer: tf.Optimizer,
  inputs: tf.Tensor,
  oneHotLabels: tf.Tensor2D,
  options: StepOptions = {},
): StepResult {
  const variables = model.trainableWeights.map((w) => w.read() as tf.Variable);
  const batch = inputs.shape[0];
  const slice = Math.max(1, Math.min(options.microBatchSize ?? batch, batch));
  let lossSum = 0;
  let correct = 0;
  let summed: tf.NamedTensorMap | undefined;
  // Weights scaled to mean 1 over the whole batch, so slices add up to sum(w * loss) / sum(w).
  const weightSum = options.sampleWeights?.reduce((a, b) => a + b, 0) ?? batch;
  const normalised = options.sampleWeights?.map((w) => (w * batch) / weightSum);
  for (let start = 0; start < batch; start += slice) {
    const size = Math.min(slice, batch - start);
    const weight = size / batch;
    const { value, grads, hits } = tf.tidy(() => {
      const x = slice === batch ? inputs : inputs.slice(start, size);
      const y = slice === batch ? oneHotLabels : oneHotLabels.slice(start, size);
      let predicted: tf.Tensor1D | undefined;
      const result = optimizer.computeGradients(() => {
        const logits = model.apply(x, { training: true }) as tf.Tensor2D;
        predicted = tf.keep(tf.argMax(logits, 1) as tf.Tensor1D);
        const weights = normalised ? tf.tensor1d(normalised.slice(start, start + size)) : undefined;
        const perSample = tf.losses.softmaxCrossEntropy(y, logits, undefined, options.labelSmoothing ?? 0, tf.Reduction.NONE);
        const crossEntropy = tf.mean(weights ? tf.mul(perSample, weights) : perSample) as tf.Scalar;
        if (!options.weightDecay) return crossEntropy;
        const squares = tf.addN(variables.map((v) => tf.sum(tf.square(v))));
        return tf.add(crossEntropy, tf.mul(squares, options.weightDecay / 2)) as tf.Scalar;
      }, variables);
      const hits = tf.sum(tf.cast(tf.equal(predicted!, tf.argMax(y, 1)), 'int32'));
      tf.dispose(predicted!);
      const scaled = Object.fromEntries(Object.entries(result.grads).map(([name, g]) => [name, weight === 1 ? g : tf.mul(g, weight)]));
      return { value: result.value, grads: scaled, hits };
    });
    lossSum += value.dataSync()[0] * weight;
    correct += hits.dataSync()[0];
    tf.dispose([value, hits]);
    if (!summed) {
      summed = grads;
    } else {
      const previous: tf.NamedTensorMap = summed;
      summed = tf.tidy(() => Object.fromEntries(Object.entries(grads).map(([name, g]) => [name, tf.add(previous[name], g)])));
      tf.dispose([...Object.values(previous), ...Object.values(grads)]);
    }
  }
  optimizer.applyGradients(summed!);
  tf.dispose(Object.values(summed!));
  return { loss: lossSum, correct };
}

/**
 * Images per forward/backward slice that fit the wasm heap (4 GiB): the parameters with their
 * gradients and two Adam moments, plus activations measured at about 6x torchinfo's
 * forward/backward estimate per image (batch 4 at 224 px is the most that fit here).
 */
export function wasmMicroBatchSize(forwardBackwardBytesPerImage: number, paramsBytes: number): number {
  const heap = 4 * 1024 ** 3;
  const free = heap - 4 * paramsBytes - 256 * 1024 ** 2;
  return Math.max(1, Math.floor(free / (6 * forwardBackwardBytesPerImage)));
}
