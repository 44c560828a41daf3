import * as tf from '../tf.js';

export interface DropoutArgs {
  name: string;
  rate: number;
  seed: number;
}

/** Room for this many training calls per epoch before the next epoch's masks would repeat them. */
const CALLS_PER_EPOCH = 2 ** 20;

/**
 * Dropout with a fresh, reproducible mask at every training call. tfjs' dropout layer passes the same
 * seed to every call, which draws the same mask at every step; this one derives the call's seed
 * from its own seed, the epoch and a call counter, so a job's seed fixes the whole run, and a run
 * resumed at an epoch (or mid-epoch, with its saved counter) draws the masks an uninterrupted one would.
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

  /** Masks from here on are those of `epoch`'s first call onwards. */
  startEpoch(epoch: number): void {
    this.calls = epoch * CALLS_PER_EPOCH;
  }

  /** Training calls so far: what a run stopped mid-epoch saves, and restores to draw the masks it would have. */
  get callCount(): number {
    return this.calls;
  }
  set callCount(calls: number) {
    this.calls = calls;
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
