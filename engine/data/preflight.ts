import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import sharp, { type Metadata } from 'sharp';
import type { ImageFolder, LabelledImage } from '../../common/image-folder.js';
import type { BadFile, InspectedFiles, PreflightOptions, PreflightReport, UsableFile } from '../../schemas/dataset.js';
import { MAX_INPUT_PIXELS, notAPhoto } from './preprocess.js';
import { balancedClassWeights, stratifiedSplit } from './split.js';

type GoodFile = UsableFile & { label: number };

/**
 * Inspections kept by the digest of a data set's files and bytes (and the rules they were found by), so a later
 * preflight of the same files (the next job on a data set, a sweep's trials) decodes none of them. `read`
 * answers null for none or unreadable.
 */
export interface InspectionCache {
  read(key: string): Promise<InspectedFiles | null>;
  write(key: string, inspected: InspectedFiles): Promise<void>;
}

/** Raised when a file's inspection would find something else than before (2: drawings such as SVG are not photos). */
const INSPECTION_RULES = 2;
/** Where the inspections of the files with `digest` are kept: inspections made by earlier rules are not read. */
export const inspectionKey = (digest: string) => `${digest}.rules-${INSPECTION_RULES}`;

const CONCURRENCY = 8;
const DECODE_EDGE = 256;

/** `work` on every image of the folder, CONCURRENCY at a time; the results in the folder's order. */
async function eachImage<T>(folder: ImageFolder, work: (bytes: Buffer, image: LabelledImage, index: number) => Promise<T>): Promise<T[]> {
  const results: T[] = [];
  for (let i = 0; i < folder.images.length; i += CONCURRENCY) {
    const batch = folder.images.slice(i, i + CONCURRENCY);
    results.push(...(await Promise.all(batch.map(async (image, k) => work(await readFile(path.join(folder.root, image.file)), image, i + k)))));
  }
  return results;
}

const sha256Of = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

/** Over every file's path and bytes in the listing's order (sorted, with the class folder): the same files and bytes, the same digest. */
function digestOf(folder: ImageFolder, sha256s: readonly string[]): string {
  const contents = createHash('sha256');
  folder.images.forEach((image, i) => contents.update(`${image.file}\t${sha256s[i]}\n`));
  return contents.digest('hex');
}

/**
 * Every file's inspection and the data set's digest. With a cache, the files are hashed first and the cache's
 * inspections used when it holds their digest; else each file is read once, hashed and decoded, and what was
 * found is kept under the digest of the bytes it was found in.
 */
async function inspections(folder: ImageFolder, cache?: InspectionCache): Promise<{ inspected: InspectedFiles; digest: string }> {
  if (cache) {
    const digest = digestOf(folder, await eachImage(folder, async (bytes) => sha256Of(bytes)));
    const cached = await cache.read(inspectionKey(digest));
    if (cached && cached.length === folder.images.length && cached.every((result, i) => result.file === folder.images[i].file))
      return { inspected: cached, digest };
  }
  const found = await eachImage(folder, async (bytes, image) => {
    const sha256 = sha256Of(bytes);
    return { sha256, result: await inspectBytes(bytes, image.file, sha256) };
  });
  const inspected = found.map(({ result }) => result);
  const sha256s = found.map(({ sha256 }) => sha256);
  const digest = digestOf(folder, sha256s);
  await cache?.write(inspectionKey(digest), inspected);
  return { inspected, digest };
}

/** What is wrong with one file, or what it is: every pixel decoded. */
async function inspectBytes(bytes: Buffer, file: string, sha256: string): Promise<UsableFile | BadFile> {
  if (bytes.length === 0) return { file, reason: 'empty', detail: 'the file has no bytes' };
  // Every pixel is decoded (a damaged file shows), but into a bounded thumbnail: a 36-Mpx PNG would
  // otherwise hold 288 MB of raw pixels per file.
  const decode = (failOn: 'truncated' | 'warning') =>
    sharp(bytes, { failOn, limitInputPixels: MAX_INPUT_PIXELS })
      .resize(DECODE_EDGE, DECODE_EDGE, { fit: 'inside', withoutEnlargement: true })
      .raw()
      .toBuffer();
  let meta: Metadata;
  try {
    meta = await sharp(bytes, { limitInputPixels: false }).metadata();
  } catch (error) {
    return { file, reason: 'not_an_image', detail: (error as Error).message };
  }
  const refusal = notAPhoto(meta.format);
  if (refusal) return { file, reason: 'not_an_image', detail: refusal };
  if ((meta.width ?? 0) * (meta.height ?? 0) > MAX_INPUT_PIXELS) {
    return { file, reason: 'too_many_pixels', detail: `${meta.width}x${meta.height} is over the ${MAX_INPUT_PIXELS}-pixel limit` };
  }
  try {
    await decode('warning');
  } catch (error) {
    // Only a damaged file is decoded a second time, to tell a cut-off file from a garbled one.
    const truncated = await decode('truncated').then(() => false, () => true);
    return { file, reason: truncated ? 'truncated' : 'corrupt', detail: (error as Error).message };
  }
  return {
    file,
    sha256,
    width: meta.width,
    height: meta.height,
    format: meta.format ?? 'unknown',
    space: meta.space ?? 'unknown',
    depth: meta.depth ?? 'unknown',
    hasAlpha: meta.hasAlpha ?? false,
    rotated: (meta.orientation ?? 1) > 1,
  };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const count = (xs: string[]) => xs.reduce<Record<string, number>>((acc, x) => ((acc[x] = (acc[x] ?? 0) + 1), acc), {});
// Not Math.min(...xs): spreading a large array overflows the stack.
const minimum = (xs: number[]) => xs.reduce((a, b) => Math.min(a, b), Infinity);
const maximum = (xs: number[]) => xs.reduce((a, b) => Math.max(a, b), -Infinity);

/**
 * Everything worth knowing about a dataset before training on it, without training: which files
 * cannot be used and why, duplicates (and those that would leak across the split), sizes, colour
 * modes, classes too small to learn, and class weights that would balance them.
 */
export async function preflight(
  folder: ImageFolder,
  options: PreflightOptions,
  cache?: InspectionCache,
): Promise<PreflightReport> {
  const { inspected, digest } = await inspections(folder, cache);
  const labelled = inspected.map((result, i) => ('sha256' in result ? { ...result, label: folder.images[i].label } : result));
  const good = labelled.filter((r): r is GoodFile => 'sha256' in r);
  const bad = labelled.filter((r): r is BadFile => 'reason' in r);
  const { validation } = stratifiedSplit(good, options.validationSplit, options.seed);
  const held = new Set(validation.map((v) => v.file));
  const byHash = new Map<string, GoodFile[]>();
  for (const file of good) {
    const copies = byHash.get(file.sha256);
    if (copies) copies.push(file);
    else byHash.set(file.sha256, [file]);
  }
  const duplicates = [...byHash.entries()]
    .filter(([, files]) => files.length > 1)
    .map(([sha256, files]) => ({
      sha256,
      files: files.map((f) => f.file),
      crossesSplit: files.some((f) => held.has(f.file)) && files.some((f) => !held.has(f.file)),
    }));
  const perClass = (files: ReadonlyArray<{ label: number }>) => {
    const counts = new Array<number>(folder.classNames.length).fill(0);
    for (const file of files) counts[file.label]++;
    return counts;
  };
  const [imagesPerClass, usablePerClass] = [perClass(folder.images), perClass(good)];
  const weights = balancedClassWeights(usablePerClass);
  return {
    classes: folder.classNames.map((name, label) => ({ name, images: imagesPerClass[label], usable: usablePerClass[label] })),
    images: folder.images.length,
    usable: good.length,
    bad,
    duplicates,
    sizes: good.length
      ? {
          minWidth: minimum(good.map((g) => g.width)), maxWidth: maximum(good.map((g) => g.width)),
          minHeight: minimum(good.map((g) => g.height)), maxHeight: maximum(good.map((g) => g.height)),
          medianWidth: median(good.map((g) => g.width)), medianHeight: median(good.map((g) => g.height)),
        }
      : null,
    formats: count(good.map((g) => g.format)),
    colourModes: count(good.map((g) => g.space)),
    bitDepths: count(good.map((g) => g.depth)),
    withAlpha: good.filter((g) => g.hasAlpha).length,
    exifRotated: good.filter((g) => g.rotated).length,
    smallClasses: folder.classNames.filter((_, label) => usablePerClass[label] < options.minImagesPerClass),
    suggestedClassWeights: Object.fromEntries(folder.classNames.map((name, label) => [name, weights[label]])),
    digest,
  };
}

/** The dataset without the files the preflight found unusable. */
export function withoutBadFiles(folder: ImageFolder, report: PreflightReport): ImageFolder {
  const bad = new Set(report.bad.map((b) => b.file));
  return { ...folder, images: folder.images.filter((image) => !bad.has(image.file)) };
}
