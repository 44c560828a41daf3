import type * as tf from '../tf.js';

/** What training and prediction need of a network, whoever runs it. */
export interface Network {
  readonly trainableWeights: tf.LayerVariable[];
  /** Outputs for a batch; `training`: dropout on, trainable BatchNorms on batch statistics. */
  forward(x: tf.Tensor, training: boolean): tf.Tensor;
  /**
   * `loss` of the outputs of a training-mode forward pass, and its gradient for each of `variables` it reaches, by name:
   * for a network that takes them its own way. Without it, tfjs' tape over forward().
   */
  readonly gradients?: (
    x: tf.Tensor,
    loss: (outputs: tf.Tensor) => tf.Scalar,
    variables: tf.Variable[],
  ) => { value: tf.Scalar; grads: tf.NamedTensorMap };
}

/** A tfjs layers model as a Network. */
export function layersNetwork(model: tf.LayersModel): Network {
  return {
    get trainableWeights() {
      return model.trainableWeights;
    },
    forward: (x, training) => model.apply(x, { training }) as tf.Tensor,
  };
}
