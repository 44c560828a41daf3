import * as tf from '../tf.js';
import { BATCH_NORM_TRAIN, BATCH_NORM_GRAD } from '../native/kernels/batch-norm.js';
import { attrMap } from '../native/kernel-attrs.js';
import { dataIdNumber } from '../native/kernels/heap.js';

export interface BatchNorm2dArgs {
  name: string;
  trainable?: boolean;
  epsilon?: number;
  momentum?: number;
}

/**
 * BatchNorm2d with PyTorch semantics. tfjs-layers' BatchNormalization ignores `trainable` and runs in
 * training mode under fit(), so a frozen one would still move: here a non-trainable layer always
 * normalises with its moving statistics and never updates them, whoever calls it.
 * `momentum` is the weight of the old statistic (0.9 = PyTorch's momentum 0.1); the running variance
 * is updated with the unbiased batch variance, as PyTorch does.
 */
export class BatchNorm2d extends tf.layers.Layer {
  static className = 'BatchNorm2d';
  readonly epsilon: number;
  readonly momentum: number;
  private gamma!: tf.LayerVariable;
  private beta!: tf.LayerVariable;
  private movingMean!: tf.LayerVariable;
  private movingVariance!: tf.LayerVariable;

  constructor(args: BatchNorm2dArgs) {
    super(args);
    this.epsilon = args.epsilon ?? 1e-5;
    this.momentum = args.momentum ?? 0.9;
  }

  override build(inputShape: tf.Shape | tf.Shape[]): void {
    const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as tf.Shape;
    const channels = shape[shape.length - 1] as number;
    this.gamma = this.addWeight('gamma', [channels], 'float32', tf.initializers.ones(), undefined, true);
    this.beta = this.addWeight('beta', [channels], 'float32', tf.initializers.zeros(), undefined, true);
    this.movingMean = this.addWeight('moving_mean', [channels], 'float32', tf.initializers.zeros(), undefined, false);
    this.movingVariance = this.addWeight('moving_variance', [channels], 'float32', tf.initializers.ones(), undefined, false);
    this.built = true;
  }

  override call(inputs: tf.Tensor | tf.Tensor[], kwargs: { training?: boolean }): tf.Tensor {
    return tf.tidy(() => {
      const x = Array.isArray(inputs) ? inputs[0] : inputs;
      if (kwargs.training === true && this.trainable) return this.normaliseWithBatchStatistics(x);
      const { scale, shift } = this.inferenceAffine();
      return tf.add(tf.mul(x, scale), shift);
    });
  }

  /** Inference mode as the per-channel affine map it is: x * scale + shift (what folds into a convolution). */
  inferenceAffine(): { scale: tf.Tensor1D; shift: tf.Tensor1D } {
    return tf.tidy(() => {
      const scale = tf.mul<tf.Tensor1D>(this.gamma.read(), tf.rsqrt(tf.add(this.movingVariance.read(), this.epsilon)));
      const shift = tf.sub<tf.Tensor1D>(this.beta.read(), tf.mul(this.movingMean.read(), scale));
      return { scale, shift };
    });
  }

  /** Ids of the values the affine map is made of: any write (training, a restored checkpoint) changes one. */
  stateIds(): number[] {
    return [this.gamma, this.beta, this.movingMean, this.movingVariance].map((v) => dataIdNumber(v.read()));
  }

  private normaliseWithBatchStatistics(x: tf.Tensor): tf.Tensor {
    if (x.rank === 4 && tf.getKernel(BATCH_NORM_TRAIN, tf.getBackend())) return this.nativeBatchStatistics(x as tf.Tensor4D);
    // Spelled out rather than tf.batchNorm: its gradient tiles every statistic to the input's shape,
    // which costs more than the convolutions' gradients on wasm.
    const axes = [0, 1, 2];
    const mean = tf.mean(x, axes);
    const centered = tf.sub(x, mean);
    const variance = tf.mean(tf.square(centered), axes);
    this.updateMovingStatistics(mean, variance, x);
    const scale = tf.mul(tf.rsqrt(tf.add(variance, this.epsilon)), this.gamma.read());
    return tf.add(tf.mul(centered, scale), this.beta.read());
  }

  /** The same in one oneDNN kernel each way (the composed ops make a dozen passes over the activations). */
  private nativeBatchStatistics(x: tf.Tensor4D): tf.Tensor {
    const attrs = attrMap({ epsilon: this.epsilon });
    const statistics: tf.Tensor[] = [];
    const normalise = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
      const [input, gamma, beta, save] = args as [tf.Tensor, tf.Tensor, tf.Tensor, tf.GradSaveFunc];
      const [y, mean, variance] = tf.engine().runKernel<tf.Tensor[]>(BATCH_NORM_TRAIN, { x: input, gamma, beta }, attrs);
      // The custom op's scope disposes what it does not return: keep the statistics for the moving averages.
      statistics.push(tf.keep(mean), tf.keep(variance));
      save([input, mean, variance, gamma]);
      return {
        value: y,
        gradFunc: (dy: tf.Tensor, [savedX, savedMean, savedVariance, savedGamma]: tf.Tensor[]) =>
          tf
            .engine()
            .runKernel<tf.Tensor[]>(BATCH_NORM_GRAD, { dy, x: savedX, mean: savedMean, variance: savedVariance, gamma: savedGamma }, attrs),
      };
    });
    const y = normalise(x, this.gamma.read(), this.beta.read());
    this.updateMovingStatistics(statistics[0], statistics[1], x);
    tf.dispose(statistics);
    return y;
  }

  /** PyTorch's update: the running variance takes the unbiased batch variance. */
  private updateMovingStatistics(mean: tf.Tensor, variance: tf.Tensor, x: tf.Tensor): void {
    const count = x.size / x.shape[x.shape.length - 1];
    tf.tidy(() => {
      const unbiased = tf.mul(variance, count / Math.max(count - 1, 1));
      const keep = this.momentum;
      this.movingMean.write(tf.add(tf.mul(this.movingMean.read(), keep), tf.mul(mean, 1 - keep)));
      this.movingVariance.write(tf.add(tf.mul(this.movingVariance.read(), keep), tf.mul(unbiased, 1 - keep)));
    });
  }

  /** Moving statistics: state, not parameters (torchinfo and PyTorch count them as buffers). */
  get buffers(): tf.LayerVariable[] {
    return [this.movingMean, this.movingVariance];
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), epsilon: this.epsilon, momentum: this.momentum };
  }
}
tf.serialization.registerClass(BatchNorm2d);

/**
 * A convolution's filter (HWIO) with the BatchNorm that follows it, in inference mode, folded in, and the
 * bias that BatchNorm becomes, as values: what exports and quantisation write.
 */
export function foldedConvBn(conv: tf.layers.Layer, bn: tf.layers.Layer): { filter: Float32Array; bias: Float32Array } {
  if (!(bn instanceof BatchNorm2d)) throw new Error(`${bn.name} is not a BatchNorm2d`);
  const { scale, shift } = bn.inferenceAffine();
  const folded = tf.mul(conv.getWeights()[0], scale);
  const values = { filter: folded.dataSync() as Float32Array, bias: shift.dataSync() as Float32Array };
  tf.dispose([scale, shift, folded]);
  return values;
}
