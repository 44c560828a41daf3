import type * as tf from '../tf.js';
import type { TrainingJobSpec } from '../../schemas/job-spec.js';
import type { EpochMetrics } from '../../schemas/metrics.js';
import { balancedClassWeights } from '../data/split.js';

/** The learning rate of a 1-based epoch: linear warm-up, then constant, step decay or cosine. */
export function learningRateAt(spec: Pick<TrainingJobSpec, 'optimizer' | 'schedule' | 'epochs'>, epoch: number): number {
  const { learningRate } = spec.optimizer;
  const { type, stepSize, gamma, minLearningRate, warmupEpochs } = spec.schedule;
  if (epoch <= warmupEpochs) return (learningRate * epoch) / warmupEpochs;
  const t = epoch - warmupEpochs - 1;
  const span = Math.max(1, spec.epochs - warmupEpochs);
  if (type === 'step') return learningRate * gamma ** Math.floor(t / stepSize);
  if (type === 'cosine') return minLearningRate + ((learningRate - minLearningRate) * (1 + Math.cos((Math.PI * t) / span))) / 2;
  return learningRate;
}

export function setLearningRate(optimizer: tf.Optimizer, learningRate: number): void {
  const target = optimizer as unknown as { setLearningRate?: (lr: number) => void; learningRate: number };
  // SGD and momentum cache the rate as a tensor (setLearningRate); Adam reads the field every step.
  if (target.setLearningRate) target.setLearningRate(learningRate);
  else target.learningRate = learningRate;
}

/** Per-class loss weights: `balanced` is scikit-learn's n / (classes x count), explicit ones as given. */
export function classWeightsFor(
  spec: Pick<TrainingJobSpec, 'classWeights'>,
  trainLabels: readonly number[],
  numClasses: number,
): number[] | null {
  if (!spec.classWeights) return null;
  if (Array.isArray(spec.classWeights)) {
    if (spec.classWeights.length !== numClasses) {
      throw new RangeError(`classWeights has ${spec.classWeights.length} weights for ${numClasses} classes`);
    }
    return spec.classWeights;
  }
  const counts = new Array<number>(numClasses).fill(0);
  for (const label of trainLabels) counts[label]++;
  return balancedClassWeights(counts);
}

type Monitor = NonNullable<TrainingJobSpec['earlyStopping']>['monitor'];

const valueOf = (e: EpochMetrics, monitor: Monitor) => (monitor === 'validation_loss' ? e.validationLoss : e.validationAccuracy);

/** The best epoch so far by the monitored validation metric (ties keep the earlier epoch). */
export function bestEpochOf(history: readonly EpochMetrics[], monitor: Monitor = 'validation_loss', minDelta = 0): EpochMetrics | null {
  let best: EpochMetrics | null = null;
  for (const epoch of history) {
    const value = valueOf(epoch, monitor);
    if (value === null) continue;
    const bestValue = best ? valueOf(best, monitor) : null;
    const improved = bestValue === null || (monitor === 'validation_loss' ? value < bestValue - minDelta : value > bestValue + minDelta);
    if (improved) best = epoch;
  }
  return best;
}

/** Early stopping: `patience` epochs have passed since the best one. */
export function shouldStop(history: readonly EpochMetrics[], earlyStopping: TrainingJobSpec['earlyStopping']): boolean {
  if (!earlyStopping || history.length === 0) return false;
  const best = bestEpochOf(history, earlyStopping.monitor, earlyStopping.minDelta);
  const last = history[history.length - 1];
  return best !== null && last.epoch - best.epoch >= earlyStopping.patience;
}
