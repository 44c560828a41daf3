import path from 'node:path';
import { z } from 'zod';

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
  seed: z.number().int().min(0).max(2 ** 31 - 1).default(0),
});

export const UploadedDataset = z.strictObject({
  type: z.literal('upload'),
  id: z.string().uuid().describe('The id POST /v1/datasets answered with'),
});

export const DatasetSpec = z.discriminatedUnion('type', [FolderDataset, SyntheticDataset, UploadedDataset]);
export type DatasetSpec = z.infer<typeof DatasetSpec>;
export type SyntheticDataset = z.infer<typeof SyntheticDataset>;

/** Where uploaded datasets are unpacked, under DATA_DIR. */
export const UPLOADS_FOLDER = 'uploads';
