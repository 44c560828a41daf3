import type { LabelledImage } from '../../common/image-folder.js';
import type { ImageLoader } from '../../engine/data/datasets.js';
import type * as tf from '../../engine/tf.js';
import { bfloat16Of, float32ValuesOf, type KeptValues } from '../../engine/model/tensor-values.js';
import type { Metrics } from '../../schemas/metrics.js';
import type { BatchSource } from './evaluate.js';
import { keptBatches } from './feature-cache.js';

export type FrozenStagesUse = NonNullable<Metrics['frozenStages']>;

/** What running the frozen stages over a data set takes: the stages, where their images come from, the budget. */
export interface FrozenStagesRun {
  /** The stages before the first that trains, in inference mode. */
  frozen: (x: tf.Tensor4D) => tf.Tensor4D;
  loader: ImageLoader;
  images: readonly LabelledImage[];
  batchSize: number;
  maxBytes: number;
  /** Keep the output as bfloat16 (half the bytes): where the stages that train read it in bfloat16 anyway, nothing is lost. */
  bfloat16: boolean;
  onBatch: (done: number) => Promise<void>;
}

/**
 * The frozen stages' output for every image, computed once and kept in the worker's memory (as bfloat16
 * when asked), so epochs run only the stages that train. The first batch gives the size per image: past
 * `maxBytes` for all images it stops there and says so, and the job runs every stage every step.
 */
export async function frozenStageOutputs({
  frozen,
  loader,
  images,
  batchSize,
  maxBytes,
  bfloat16,
  onBatch,
}: FrozenStagesRun): Promise<{ inputs: BatchSource | null; use: Omit<FrozenStagesUse, 'stage'> }> {
  const outputs = new Map<string, KeptValues>();
  const storedAs = bfloat16 ? 'bfloat16' : 'float32';
  const bytesPerValue = bfloat16 ? 2 : 4;
  let shape: number[] = [];
  for (let start = 0; start < images.length; start += batchSize) {
    const batch = images.slice(start, start + batchSize);
    const x = await loader.batch(batch);
    let batchShape: number[] = [];
    const values = float32ValuesOf(() => {
      const y = frozen(x);
      batchShape = y.shape;
      return y;
    });
    x.dispose();
    shape = batchShape.slice(1);
    const perImage = values.length / batch.length;
    const bytes = bytesPerValue * perImage * images.length;
    if (bytes > maxBytes)
      return {
        inputs: null,
        use: { reused: false, imagesComputed: 0, bytes, storedAs, reason: `over FEATURE_CACHE_MAX_BYTES (${maxBytes})` },
      };
    batch.forEach((image, i) => {
      const own = values.subarray(i * perImage, (i + 1) * perImage);
      outputs.set(image.file, bfloat16 ? bfloat16Of(own) : own.slice());
    });
    await onBatch(start + batch.length);
  }
  const bytes = bytesPerValue * shape.reduce((size, dim) => size * dim, 1) * outputs.size;
  return {
    inputs: keptBatches(outputs, shape, 'frozen-stage output'),
    use: { reused: true, imagesComputed: outputs.size, bytes, storedAs, reason: null },
  };
}
