import { realpath } from 'node:fs/promises';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { UPLOADS_FOLDER, type DatasetSpec } from '../../schemas/dataset.js';
import { DatasetError, readImageFolder, type ImageFolder, type LabelledImage } from './image-folder.js';
import { decodeForModel, type Preprocessing, type RandomTransform } from './preprocess.js';
import { materializeSyntheticDataset } from './synthetic.js';

const SYNTHETIC_CACHE = '.synthetic';

/** The dataset's folder, refusing anything that resolves (symlinks included) outside DATA_DIR. */
export async function resolveDataset(spec: DatasetSpec, dataDir: string): Promise<ImageFolder> {
  if (spec.type === 'synthetic') {
    return readImageFolder(await materializeSyntheticDataset(spec, path.join(dataDir, SYNTHETIC_CACHE)));
  }
  const root = path.resolve(dataDir, spec.type === 'upload' ? path.join(UPLOADS_FOLDER, spec.id) : spec.path);
  const [realRoot, realDataDir] = await Promise.all([
    realpath(root).catch(() => {
      throw new DatasetError(spec.type === 'upload' ? `no uploaded dataset ${spec.id}` : `dataset folder not found: ${spec.path} (under DATA_DIR)`);
    }),
    realpath(dataDir),
  ]);
  if (!realRoot.startsWith(realDataDir + path.sep)) throw new DatasetError('the dataset path resolves outside DATA_DIR');
  return readImageFolder(realRoot);
}

/**
 * Decoded, preprocessed images of one dataset. Keeps decoded crops in memory up to a byte budget,
 * so small datasets are decoded once per job rather than once per epoch.
 */
export class ImageLoader {
  private readonly cache = new Map<string, Float32Array>();
  private cachedBytes = 0;

  constructor(
    private readonly root: string,
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
    const size = this.preprocessing.crop;
    const data = new Float32Array(crops.length * size * size * 3);
    crops.forEach((crop, i) => data.set(crop, i * crop.length));
    return tf.tensor4d(data, [crops.length, size, size, 3]);
  }
}
