import path from 'node:path';
import type * as tf from '../tf.js';
import { locateDatasetFolder, readImageFolder, type ImageFolder, type LabelledImage } from '../../common/image-folder.js';
import { SYNTHETIC_CACHE, type DatasetSpec } from '../../schemas/dataset.js';
import type { Preprocessing } from '../../schemas/model.js';
import { decodeForModel, type RandomTransform } from './preprocess.js';
import { float32TensorOf } from '../model/tensor-values.js';
import { materializeSyntheticDataset } from './synthetic.js';


/** The images a dataset spec names: synthetic ones are written as PNG files first, in the cache under DATA_DIR unless told where. */
export async function resolveDataset(
  spec: DatasetSpec,
  dataDir: string,
  syntheticRoot = path.join(dataDir, SYNTHETIC_CACHE),
): Promise<ImageFolder> {
  const root = spec.type === 'synthetic' ? await materializeSyntheticDataset(spec, syntheticRoot) : await locateDatasetFolder(spec, dataDir);
  return readImageFolder(root);
}

/**
 * Decoded, preprocessed images of one dataset. Keeps decoded crops in memory up to a byte budget,
 * so small datasets are decoded once per job rather than once per epoch.
 */
export class ImageLoader {
  private readonly cache = new Map<string, Float32Array>();
  private cachedBytes = 0;

  constructor(
    readonly root: string,
    readonly preprocessing: Preprocessing,
    private readonly maxCacheBytes = 1024 ** 3,
  ) {}

  async image(file: string, augment?: RandomTransform): Promise<Float32Array> {
    // Augmented crops differ every time: decode them fresh.
    if (augment) return decodeForModel(path.join(this.root, file), this.preprocessing, augment);
    const hit = this.cache.get(file);
    if (hit) return hit;
    const pixels = await decodeForModel(path.join(this.root, file), this.preprocessing);
    if (this.cachedBytes + pixels.byteLength <= this.maxCacheBytes) {
      this.cache.set(file, pixels);
      this.cachedBytes += pixels.byteLength;
    }
    return pixels;
  }

  /** A batch as an NHWC tensor (sharp decodes in parallel on libuv's thread pool). */
  async batch(images: readonly LabelledImage[], augment?: (image: LabelledImage) => RandomTransform): Promise<tf.Tensor4D> {
    const crops = await Promise.all(images.map((image) => this.image(image.file, augment?.(image))));
    return nhwcBatch(crops, this.preprocessing.crop);
  }
}

/** Decoded HWC crops of one size as one NHWC batch. */
export function nhwcBatch(crops: readonly Float32Array[], size: number): tf.Tensor4D {
  return float32TensorOf(crops, [crops.length, size, size, 3]) as tf.Tensor4D;
}
