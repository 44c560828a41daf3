import { readdir, realpath } from 'node:fs/promises';
import path from 'node:path';
import { UPLOAD_CACHE, UPLOADS_FOLDER, type FolderDataset, type UploadedDataset } from '../schemas/dataset.js';
import { localUploadFolder } from './shared-uploads.js';

export const IMAGE_EXTENSIONS = new Set(['.jpg', '.jpeg', '.png', '.webp']);

export interface LabelledImage {
  /** Path relative to the dataset root, '/'-separated: `class/file.png`. */
  file: string;
  label: number;
}

export interface ImageFolder {
  root: string;
  classNames: string[];
  images: LabelledImage[];
}

export class DatasetError extends Error {}

/** torchvision's ImageFolder convention: one sub-folder per class, classes sorted by name. */
export async function readImageFolder(root: string): Promise<ImageFolder> {
  let entries;
  try {
    entries = await readdir(root, { withFileTypes: true });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new DatasetError(`dataset folder not found: ${root}`);
    throw error;
  }
  const classNames = entries
    .filter((e) => e.isDirectory() && !e.name.startsWith('.'))
    .map((e) => e.name)
    .sort();
  if (classNames.length < 2) throw new DatasetError(`a dataset needs at least 2 class folders, found ${classNames.length} in ${root}`);
  const images: LabelledImage[] = [];
  for (const [label, name] of classNames.entries()) {
    const files = (await readdir(path.join(root, name), { withFileTypes: true }))
      .filter((f) => f.isFile() && IMAGE_EXTENSIONS.has(path.extname(f.name).toLowerCase()))
      .map((f) => f.name)
      .sort();
    if (files.length === 0) throw new DatasetError(`class folder "${name}" has no .jpg, .jpeg, .png or .webp images`);
    images.push(...files.map((file) => ({ file: `${name}/${file}`, label })));
  }
  return { root, classNames, images };
}

/** The folder a folder or upload dataset names, refusing anything that resolves (symlinks included) outside DATA_DIR. */
export async function locateDatasetFolder(spec: FolderDataset | UploadedDataset, dataDir: string): Promise<string> {
  // An upload not on this host resolves to its cache folder, which realpath then finds missing.
  const root =
    spec.type === 'upload'
      ? ((await localUploadFolder(dataDir, spec.id))?.folder ?? path.resolve(dataDir, UPLOAD_CACHE, spec.id))
      : path.resolve(dataDir, spec.path);
  const notFound = () => {
    throw new DatasetError(
      spec.type === 'upload' ? `no uploaded dataset ${spec.id}` : `dataset folder not found: ${spec.path} (under DATA_DIR)`,
    );
  };
  // A DATA_DIR not made yet (nothing uploaded or cached on this host) holds no dataset either.
  const [realRoot, realDataDir] = await Promise.all([realpath(root).catch(notFound), realpath(dataDir).catch(notFound)]);
  if (!realRoot.startsWith(realDataDir + path.sep)) throw new DatasetError('the dataset path resolves outside DATA_DIR');
  const uploads = path.join(realDataDir, UPLOADS_FOLDER);
  if (spec.type === 'folder' && (realRoot === uploads || realRoot.startsWith(uploads + path.sep))) {
    throw new DatasetError(`folder datasets cannot reach the upload area; name an upload as {"type":"upload","id":...}`);
  }
  // Hidden folders (the synthetic cache, npm start's Redis files) are the service's own.
  if (spec.type === 'folder' && path.relative(realDataDir, realRoot).startsWith('.')) {
    throw new DatasetError('folders whose name starts with "." are the service\'s own, not datasets');
  }
  return realRoot;
}
