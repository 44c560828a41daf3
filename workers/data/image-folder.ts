import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { mixSeed, shuffled } from './random.js';

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
  const classNames = entries.filter((e) => e.isDirectory() && !e.name.startsWith('.')).map((e) => e.name).sort();
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

/**
 * Holds out `fraction` of every class (at least one image where a class has two or more), so the
 * validation split has every class in the dataset's proportions.
 */
export function stratifiedSplit(images: readonly LabelledImage[], fraction: number, seed: number) {
  const train: LabelledImage[] = [];
  const validation: LabelledImage[] = [];
  const byLabel = new Map<number, LabelledImage[]>();
  for (const image of images) byLabel.set(image.label, [...(byLabel.get(image.label) ?? []), image]);
  for (const [label, members] of [...byLabel].sort(([a], [b]) => a - b)) {
    const order = shuffled(members, mixSeed(seed, label));
    const held = fraction === 0 ? 0 : Math.min(order.length - 1, Math.max(1, Math.round(order.length * fraction)));
    validation.push(...order.slice(0, held));
    train.push(...order.slice(held));
  }
  return { train, validation };
}
