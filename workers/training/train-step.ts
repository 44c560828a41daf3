import * as tf from '@tensorflow/tfjs';

export interface StepResult {
  loss: number;
  correct: number;
}

export interface StepOptions {
  /** L2 penalty whose gradient is weightDecay * w, as torch.optim's weight_decay adds. */
  weightDecay?: number;
  labelSmoothing?: number;
}

/**
 * One optimiser step on a batch: forward in training mode (dropout on, trainable BatchNorm on batch
 * statistics), softmax cross-entropy on the logits, gradients for the trainable weights only.
 */
export function trainStep(
  model: tf.LayersModel,
  optimizer: tf.Optimizer,
  images: tf.Tensor4D,
  oneHotLabels: tf.Tensor2D,
  options: StepOptions = {},
): StepResult {
  const variables = model.trainableWeights.map((w) => w.read() as tf.Variable);
  let predicted: tf.Tensor1D | undefined;
  const loss = optimizer.minimize(
    () => {
      const logits = model.apply(images, { training: true }) as tf.Tensor2D;
      predicted = tf.keep(tf.argMax(logits, 1) as tf.Tensor1D);
      const crossEntropy = tf.losses.softmaxCrossEntropy(oneHotLabels, logits, undefined, options.labelSmoothing ?? 0) as tf.Scalar;
      if (!options.weightDecay) return crossEntropy;
      const squares = tf.addN(variables.map((v) => tf.sum(tf.square(v))));
      return tf.add(crossEntropy, tf.mul(squares, options.weightDecay / 2)) as tf.Scalar;
    },
    true,
    variables,
  )!;
  const value = loss.dataSync()[0];
  const correct = tf.tidy(() => tf.sum(tf.cast(tf.equal(predicted!, tf.argMax(oneHotLabels, 1)), 'int32')).dataSync()[0]);
  tf.dispose([loss, predicted!]);
  return { loss: value, correct };
}
