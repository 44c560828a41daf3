import type * as tf from '../tf.js';

/** What training and prediction need of a network, whoever runs it. */
export interface Network {
  readonly trainableWeights: tf.LayerVariable[];
  /** Outputs for a batch; `training`: dropout on, trainable BatchNorms on batch statistics. */
  forward(x: tf.Tensor, training: boolean): tf.Tensor;
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
