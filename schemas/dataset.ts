import path from 'node:path';
import { z } from 'zod';
import { LOCAL_OWNER, Owner } from './auth.js';

export const Seed = z
  .number()
  .int()
  .min(0)
  .max(2 ** 31 - 1)
  .default(0);
export const ValidationSplit = z.number().min(0).max(0.9).default(0.2).describe('Fraction of each class held out (stratified)');

/** A relative path that stays inside DATA_DIR: no absolute paths, no `..` segments, no NUL bytes. */
export const DataRelativePath = z
  .string()
  .min(1)
  .max(1024)
  .refine((p) => !p.includes('\0'), 'path must not contain NUL bytes')
  .refine((p) => !path.isAbsolute(p) && !/^[a-zA-Z]:/.test(p), 'path must be relative to DATA_DIR')
  .refine((p) => !p.split(/[\\/]/).includes('..'), 'path must not contain ".." segments');

export const FolderDataset = z.strictObject({
  type: z.literal('folder'),
  path: DataRelativePath.describe('Folder under DATA_DIR with one sub-folder of images per class'),
});

export const SyntheticDataset = z.strictObject({
  type: z.literal('synthetic'),
  numClasses: z.number().int().min(2).max(16).default(4),
  imagesPerClass: z.number().int().min(2).max(2000).default(40),
  imageSize: z.number().int().min(16).max(512).default(64),
  seed: Seed,
});

export const UploadedDataset = z.strictObject({
  type: z.literal('upload'),
  id: z.string().uuid().describe('The id POST /v1/datasets answered with'),
});

export const DatasetSpec = z.discriminatedUnion('type', [FolderDataset, SyntheticDataset, UploadedDataset]);
export type DatasetSpec = z.infer<typeof DatasetSpec>;
export type SyntheticDataset = z.infer<typeof SyntheticDataset>;
export type FolderDataset = z.infer<typeof FolderDataset>;
export type UploadedDataset = z.infer<typeof UploadedDataset>;

/** Where uploaded datasets are unpacked, under DATA_DIR. */
export const UPLOADS_FOLDER = 'uploads';
/** Where a host that did not receive an upload keeps the copy it fetched from a shared store, under DATA_DIR. */
export const UPLOAD_CACHE = '.upload-cache';
/** Under DATA_DIR: one folder of PNG files per synthetic data set a worker trained on. */
export const SYNTHETIC_CACHE = '.synthetic';

export const PreflightOptions = z.strictObject({
  validationSplit: ValidationSplit,
  seed: Seed,
  minImagesPerClass: z.number().int().min(1).max(100_000).default(10).describe('Classes with fewer usable images are listed as small'),
});
export type PreflightOptions = z.infer<typeof PreflightOptions>;

export const BadReason = z.enum(['empty', 'not_an_image', 'truncated', 'corrupt', 'too_many_pixels']);
export const BadFile = z.object({ file: z.string(), reason: BadReason, detail: z.string() });
export type BadFile = z.infer<typeof BadFile>;

/** A usable file as the preflight found it (without its label: that is the class folder's place in today's listing). */
export const UsableFile = z.object({
  file: z.string(),
  sha256: z.string(),
  width: z.number().int(),
  height: z.number().int(),
  format: z.string(),
  space: z.string(),
  depth: z.string(),
  hasAlpha: z.boolean(),
  rotated: z.boolean(),
});
export type UsableFile = z.infer<typeof UsableFile>;

/** What inspecting every file of a data set found, in its listing's order: kept by the data set's digest. */
export const InspectedFiles = z.array(z.union([UsableFile, BadFile]));
export type InspectedFiles = z.infer<typeof InspectedFiles>;

const counts = z.record(z.string(), z.number().int());

/** Everything worth knowing about a dataset before training on it. */
export const PreflightReport = z.object({
  classes: z.array(z.object({ name: z.string(), images: z.number().int(), usable: z.number().int() })),
  images: z.number().int(),
  usable: z.number().int(),
  bad: z.array(BadFile),
  duplicates: z
    .array(z.object({ sha256: z.string(), files: z.array(z.string()), crossesSplit: z.boolean() }))
    .describe('Files with identical bytes; crossesSplit when copies land in both train and validation'),
  sizes: z
    .object({
      minWidth: z.number().int(),
      maxWidth: z.number().int(),
      minHeight: z.number().int(),
      maxHeight: z.number().int(),
      medianWidth: z.number().int(),
      medianHeight: z.number().int(),
    })
    .nullable(),
  formats: counts.describe('Usable images by decoded format (jpeg, png, webp, ...)'),
  colourModes: counts,
  bitDepths: counts,
  withAlpha: z.number().int(),
  exifRotated: z.number().int(),
  smallClasses: z.array(z.string()),
  suggestedClassWeights: z.record(z.string(), z.number()).describe("scikit-learn's balanced weights over the usable images, by class name"),
  digest: z
    .string()
    .optional()
    .describe("SHA-256 over every file's path and the SHA-256 of its bytes, in path order: the same data gives the same digest"),
});
export type PreflightReport = z.infer<typeof PreflightReport>;

export const DatasetRecord = z.object({
  id: z.uuid(),
  owner: Owner.default(LOCAL_OWNER),
  name: z.string(),
  createdAt: z.string(),
  archiveBytes: z.number().int(),
  files: z.number().int(),
  unpackedBytes: z.number().int(),
  classNames: z.array(z.string()),
  images: z.number().int(),
  preflight: PreflightReport,
});
export type DatasetRecord = z.infer<typeof DatasetRecord>;
