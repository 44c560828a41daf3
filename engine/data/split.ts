import type { LabelledImage } from '../../common/image-folder.js';
import { mixSeed, shuffled } from '../../common/random.js';

/**
 * Holds out `fraction` of every class (at least one image where a class has two or more), so the
 * validation split has every class in the dataset's proportions.
 */
export function stratifiedSplit(images: readonly LabelledImage[], fraction: number, seed: number) {
  const train: LabelledImage[] = [];
  const validation: LabelledImage[] = [];
  const byLabel = new Map<number, LabelledImage[]>();
  for (const image of images) {
    const members = byLabel.get(image.label);
    if (members) members.push(image);
    else byLabel.set(image.label, [image]);
  }
  for (const [label, members] of [...byLabel].sort(([a], [b]) => a - b)) {
    const order = shuffled(members, mixSeed(seed, label));
    const held = fraction === 0 ? 0 : Math.min(order.length - 1, Math.max(1, Math.round(order.length * fraction)));
    validation.push(...order.slice(0, held));
    train.push(...order.slice(held));
  }
  return { train, validation };
}

/** scikit-learn's balanced class weights, n / (classes x count of the class); 0 for an empty class. */
export function balancedClassWeights(countsPerClass: readonly number[]): number[] {
  const total = countsPerClass.reduce((a, b) => a + b, 0);
  return countsPerClass.map((count) => (count ? total / (countsPerClass.length * count) : 0));
}
