import path from 'node:path';
import * as tf from '../../engine/tf.js';
import sharp from 'sharp';
import type { JobArtifacts } from '../../common/job-artifacts.js';
import type { Network } from '../../engine/model/network.js';
import type { LabelledImage } from '../../common/image-folder.js';
import type { Evaluation, Prediction } from '../../schemas/metrics.js';
import { scoreProbabilities, type Scores } from '../../engine/training/classification-report.js';
import { float32ValuesOf } from '../../engine/model/tensor-values.js';

/** The model's input for a batch of images: decoded pixels, or cached CNN codes for a head alone. */
export type BatchSource = (images: readonly LabelledImage[]) => Promise<tf.Tensor>;

/** Held-out predictions kept in the metrics, to audit the saved model against. */
const PREDICTIONS_KEPT = 32;

export interface Evaluated {
  /** Null when the images carry no labels the model knows. */
  scores: Scores | null;
  probabilities: Float32Array[];
}

/** Class probabilities for every image, and their scores where the images are labelled. */
export async function evaluate(
  network: Network,
  inputs: BatchSource,
  images: readonly LabelledImage[],
  batchSize: number,
  labelled: boolean,
): Promise<Evaluated> {
  const probabilities: Float32Array[] = [];
  for (let i = 0; i < images.length; i += batchSize) {
    const batch = images.slice(i, i + batchSize);
    const x = await inputs(batch);
    const probs = float32ValuesOf(() => tf.softmax(network.forward(x, false)));
    x.dispose();
    const classes = probs.length / batch.length;
    for (let j = 0; j < batch.length; j++) probabilities.push(probs.slice(j * classes, (j + 1) * classes));
  }
  const scores =
    labelled && images.length
      ? scoreProbabilities(
          probabilities,
          images.map((image) => image.label),
        )
      : null;
  return { scores, probabilities };
}

export const round = (x: number) => Math.round(x * 1e6) / 1e6;

export function evaluationOf({ scores }: Evaluated, split: Evaluation['split'], images: number): Evaluation {
  return { split, loss: scores?.loss ?? null, accuracy: scores?.top1 ?? null, top5Accuracy: scores?.top5 ?? null, images };
}

const THUMBNAIL_PIXELS = 160;

/** Thumbnails of the images whose predictions the metrics keep, so a dashboard can show them wherever the dataset is. */
export async function writeValidationThumbnails(artifacts: JobArtifacts, root: string, predictions: readonly Prediction[]): Promise<void> {
  for (const [index, { file }] of predictions.entries()) {
    const thumbnail = await sharp(path.join(root, file))
      .rotate()
      .resize(THUMBNAIL_PIXELS, THUMBNAIL_PIXELS, { fit: 'inside', withoutEnlargement: true })
      .flatten({ background: '#ffffff' })
      .jpeg({ quality: 85 })
      .toBuffer();
    await artifacts.validationImage(index).write(thumbnail);
  }
}

export function predictionsOf(images: readonly LabelledImage[], { probabilities }: Evaluated): Prediction[] {
  return images
    .slice(0, PREDICTIONS_KEPT)
    .map((image, i) => ({ file: image.file, label: image.label, probabilities: Array.from(probabilities[i]) }));
}
