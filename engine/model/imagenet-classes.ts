import { readFile } from 'node:fs/promises';

const FILE = new URL('./imagenet-classes.txt', import.meta.url);
let cached: string[] | undefined;

/** The 1000 ImageNet class names in torchvision's index order. */
export async function loadImageNetClassNames(): Promise<string[]> {
  cached ??= (await readFile(FILE, 'utf8'))
    .split('\n')
    .map((line) => line.trim())
    .filter(Boolean);
  return cached;
}
