import { evictStoreCache, type CachePolicy } from '../../common/cache-eviction.js';
import { createHash } from 'node:crypto';
import path from 'node:path';
import * as tf from '../../engine/tf.js';
import { layersNetwork, type Network } from '../../engine/model/network.js';
import { z } from 'zod';
import { readJson, type ArtifactStore } from '../../common/artifact-store.js';
import { hashFile } from '../../common/file-hash.js';
import type { LabelledImage } from '../../common/image-folder.js';
import type { Metrics } from '../../schemas/metrics.js';
import { RESAMPLING } from '../../engine/data/preprocess.js';
import type { Preprocessing } from '../../schemas/model.js';
import type { ImageLoader } from '../../engine/data/datasets.js';
import { FEATURE_DIM, type ResNet50 } from '../../engine/model/resnet50.js';
import type { FrozenCodes } from '../../engine/model/fused-backbone.js';
import type { BatchSource } from './evaluate.js';
import { float32TensorOf, float32ValuesOf, type KeptValues } from '../../engine/model/tensor-values.js';

const FEATURE_CACHE = 'feature-cache';

/**
 * What the CNN codes depend on: every image's bytes, the backbone weights, the preprocessing and the
 * backend (backends round differently). Same key, same codes.
 */
export async function featureCacheKey(parts: {
  root: string;
  images: readonly LabelledImage[];
  weights: string;
  preprocessing: Preprocessing;
  backend: string;
}): Promise<string> {
  const hash = createHash('sha256');
  hash.update(JSON.stringify([parts.weights, parts.preprocessing, parts.backend, RESAMPLING]));
  for (const image of [...parts.images].sort((a, b) => a.file.localeCompare(b.file))) {
    hash.update(image.file);
    await hashFile(path.join(parts.root, image.file), hash);
  }
  return hash.digest('hex');
}

export interface FeatureCodes {
  codes: Map<string, Float32Array>;
  /** Images the backbone ran on for this job: all of them on a miss, none on a hit. */
  backboneImages: number;
  cacheHit: boolean;
}

const CachedFiles = z.array(z.string());

const codesByFile = (files: readonly string[], all: Float32Array) =>
  new Map(files.map((file, i) => [file, all.subarray(i * FEATURE_DIM, (i + 1) * FEATURE_DIM)]));

/** What running the backbone over a data set takes: the backbone, where its images come from, and how to report and evict. */
export interface CodesRun {
  backbone: FrozenCodes;
  loader: ImageLoader;
  images: readonly LabelledImage[];
  batchSize: number;
  onBatch: (done: number) => Promise<void>;
  policy: CachePolicy;
}

/**
 * The frozen backbone's 2048-D output (after avgpool) for every image, computed once and kept in the
 * artifact store by content, so epochs after the first and later jobs on the same data skip it.
 */
export async function featureCodes(
  store: ArtifactStore,
  key: string,
  { backbone, loader, images, batchSize, onBatch, policy }: CodesRun,
): Promise<FeatureCodes> {
  const prefix = `${FEATURE_CACHE}/${key}`;
  const cachedFiles = (await store.stat(`${prefix}.f32`)) ? await readJson(store, `${prefix}.json`, CachedFiles) : null;
  if (cachedFiles) {
    // Rewriting the small index marks the entry used, in any store (its modification time is what eviction reads).
    await store.write(`${prefix}.json`, JSON.stringify(cachedFiles));
    const bytes = await store.read(`${prefix}.f32`);
    const all = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
    return { codes: codesByFile(cachedFiles, all), backboneImages: 0, cacheHit: true };
  }
  const all = new Float32Array(images.length * FEATURE_DIM);
  for (let start = 0; start < images.length; start += batchSize) {
    const batch = images.slice(start, start + batchSize);
    const x = await loader.batch(batch);
    all.set(
      float32ValuesOf(() => backbone.codes(x)),
      start * FEATURE_DIM,
    );
    x.dispose();
    await onBatch(start + batch.length);
  }
  const files = images.map((image) => image.file);
  await store.write(`${prefix}.f32`, new Uint8Array(all.buffer));
  await store.write(`${prefix}.json`, JSON.stringify(files));
  await evictStoreCache(store, FEATURE_CACHE, policy);
  return { codes: codesByFile(files, all), backboneImages: images.length, cacheHit: false };
}

/** Codes of each batch of pixels, computed as they come (inference mode, no gradient tape). */
export function liveCodes(backbone: FrozenCodes): (pixels: BatchSource) => BatchSource {
  return (pixels) => async (batch) => {
    const x = await pixels(batch);
    const codes = backbone.codes(x as tf.Tensor4D);
    x.dispose();
    return codes;
  };
}

/** The head alone, on CNN codes; it shares its layer (and so its weights) with the full model. */
export function headOnCodes(resnet: ResNet50): Network {
  const codes = tf.input({ shape: [FEATURE_DIM], name: 'cnn_codes' });
  return layersNetwork(tf.model({ inputs: codes, outputs: resnet.model.getLayer('fc').apply(codes) as tf.SymbolicTensor }));
}

/** Batches of outputs kept per image file (CNN codes, frozen stages' outputs), each of `shape`. */
export function keptBatches(kept: ReadonlyMap<string, KeptValues>, shape: readonly number[], what: string): BatchSource {
  const perImage = shape.reduce((size, dim) => size * dim, 1);
  return async (batch) => {
    const parts = batch.map((image) => {
      const values = kept.get(image.file);
      if (!values || values.length !== perImage) throw new Error(`no ${what} for ${image.file}`);
      return values;
    });
    return float32TensorOf(parts, [batch.length, ...shape]);
  };
}

/** Batches of cached codes for the head: the same input for training and validation. */
export function codeBatches({ codes }: FeatureCodes): BatchSource {
  return keptBatches(codes, [FEATURE_DIM], 'CNN code');
}

export type FeatureCacheUse = NonNullable<Metrics['featureCache']>;
