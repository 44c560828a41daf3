import * as tf from '@tensorflow/tfjs';

/**
 * One optimiser step on a batch: forward in training mode (dropout on, trainable BatchNorm on batch
 * statistics), softmax cross-entropy on the logits, gradients for the trainable weights only.
 */
export function trainStep(
  model: tf.LayersModel,
  optimizer: tf.Optimizer,
  images: tf.Tensor4D,
  oneHotLabels: tf.Tensor2D,
  options: { labelSmoothing?: number } = {},
): number {
  const variables = model.trainableWeights.map((w) => w.read() as tf.Variable);
  const loss = optimizer.minimize(
    () => {
      const logits = model.apply(images, { training: true }) as tf.Tensor2D;
      return tf.losses.softmaxCrossEntropy(oneHotLabels, logits, undefined, options.labelSmoothing ?? 0) as tf.Scalar;
    },
    true,
    variables,
  );
  const value = loss!.dataSync()[0];
  loss!.dispose();
  return value;
}
