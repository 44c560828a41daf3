import type { ClassificationReport } from '../../schemas/metrics.js';

/** Indices of the k largest entries, largest first. */
export function topIndices(row: ArrayLike<number>, k: number): number[] {
  return Array.from(row, (value, index) => [value, index] as const)
    .sort((a, b) => b[0] - a[0])
    .slice(0, k)
    .map(([, index]) => index);
}

export interface Scores {
  loss: number;
  top1: number;
  top5: number;
}

/** Mean cross-entropy, top-1 and top-5 accuracy of class probabilities against labels. */
export function scoreProbabilities(probabilities: readonly Float32Array[], labels: readonly number[]): Scores {
  let loss = 0;
  let top1 = 0;
  let top5 = 0;
  probabilities.forEach((row, i) => {
    loss -= Math.log(Math.max(row[labels[i]], 1e-12));
    const top = topIndices(row, 5);
    if (top[0] === labels[i]) top1++;
    if (top.includes(labels[i])) top5++;
  });
  const n = Math.max(1, probabilities.length);
  return { loss: loss / n, top1: top1 / n, top5: top5 / n };
}

/** Per-class precision, recall and F1 (0 where undefined, as scikit-learn's zero_division=0) and the confusion matrix. */
export function classificationReport(
  classNames: readonly string[],
  labels: readonly number[],
  predicted: readonly number[],
): ClassificationReport {
  const n = classNames.length;
  const matrix = Array.from({ length: n }, () => new Array<number>(n).fill(0));
  labels.forEach((label, i) => matrix[label][predicted[i]]++);
  const perClass = classNames.map((className, c) => {
    const truePositives = matrix[c][c];
    const support = matrix[c].reduce((a, b) => a + b, 0);
    const predictedAs = matrix.reduce((sum, row) => sum + row[c], 0);
    const precision = predictedAs ? truePositives / predictedAs : 0;
    const recall = support ? truePositives / support : 0;
    const f1 = precision + recall ? (2 * precision * recall) / (precision + recall) : 0;
    return { className, precision, recall, f1, support };
  });
  return { perClass, confusionMatrix: { classNames: [...classNames], rows: 'true class', columns: 'predicted class', matrix } };
}
