import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import sharp from 'sharp';

/** Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist): 70,000 labelled 28x28 photos. */
export const FASHION_MNIST = '/usr/share/datasets/fashion-mnist';
/** Fashion-MNIST's class names, in the label order of its files. */
export const FASHION_MNIST_CLASSES = [
  'T-shirt_top',
  'Trouser',
  'Pullover',
  'Dress',
  'Coat',
  'Sandal',
  'Shirt',
  'Sneaker',
  'Bag',
  'Ankle_boot',
];

/**
 * The first `count` photos of the training (or test) file (of `classes` when given, from the `skip`-th photo on)
 * as PNG files in one folder per class, as a folder dataset holds them.
 */
export async function writeFashionMnistFolder(
  folder: string,
  count: number,
  {
    classes = FASHION_MNIST_CLASSES,
    skip = 0,
    file = 'train',
  }: { classes?: readonly string[]; skip?: number; file?: 'train' | 't10k' } = {},
): Promise<void> {
  const images = gunzipSync(readFileSync(path.join(FASHION_MNIST, `${file}-images-idx3-ubyte.gz`)));
  const labels = gunzipSync(readFileSync(path.join(FASHION_MNIST, `${file}-labels-idx1-ubyte.gz`)));
  // idx: images have a 16-byte header (magic, count, rows, columns), labels an 8-byte one.
  const [rows, columns] = [images.readUInt32BE(8), images.readUInt32BE(12)];
  let written = 0;
  for (let i = skip; i < images.readUInt32BE(4) && written < count; i++) {
    const label = FASHION_MNIST_CLASSES[labels[8 + i]];
    if (!classes.includes(label)) continue;
    const dir = path.join(folder, label);
    if (!existsSync(dir)) mkdirSync(dir, { recursive: true });
    const pixels = images.subarray(16 + i * rows * columns, 16 + (i + 1) * rows * columns);
    await sharp(pixels, { raw: { width: columns, height: rows, channels: 1 } })
      .png()
      .toFile(path.join(dir, `${i}.png`));
    written++;
  }
}
