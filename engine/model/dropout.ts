import * as tf from '@tensorflow/tfjs';

export interface DropoutArgs {
  name: string;
  rate: number;
  seed: number;
}

/**
 * Dropout with a fresh, reproducible mask at every training call. tfjs' dropout layer passes the same
 * seed to every call, which draws the same mask at every step; this one derives the call's seed
 * from its own seed and a call counter, so a job's seed still fixes the whole run.
 */
export class Dropout extends tf.layers.Layer {
  static className = 'SeededDropout';
  readonly rate: number;
  readonly seed: number;
  private calls = 0;

  constructor(args: DropoutArgs) {
    super(args);
    this.rate = args.rate;
    this.seed = args.seed;
  }

  override call(inputs: tf.Tensor | tf.Tensor[], kwargs: { training?: boolean }): tf.Tensor {
    const x = Array.isArray(inputs) ? inputs[0] : inputs;
    if (kwargs.training !== true || this.rate === 0) return tf.clone(x);
    const seed = (this.seed * 1_000_003 + this.calls++) % 2 ** 31;
    return tf.dropout(x, this.rate, undefined, seed);
  }

  override computeOutputShape(inputShape: tf.Shape | tf.Shape[]): tf.Shape | tf.Shape[] {
    return inputShape;
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), rate: this.rate, seed: this.seed };
  }
}
tf.serialization.registerClass(Dropout);
