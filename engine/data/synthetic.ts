import { createHash, randomUUID } from 'node:crypto';
import { mkdir, rename, rm, stat, utimes } from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';
import type { SyntheticDataset } from '../../schemas/dataset.js';
import { seededRandom } from '../../common/random.js';

const PATTERNS = ['disc', 'square', 'stripes', 'checker'] as const;

function hueToRgb(hue: number): [number, number, number] {
  const f = (n: number) => {
    const k = (n + hue * 6) % 6;
    return 255 * (1 - Math.max(0, Math.min(k, 4 - k, 1)));
  };
  return [f(5), f(3), f(1)];
}

export const syntheticClassName = (label: number, numClasses: number) =>
  `c${String(label).padStart(2, '0')}-${PATTERNS[label % PATTERNS.length]}-hue${String(Math.round((360 * label) / numClasses)).padStart(3, '0')}`;

/**
 * One image of a class: a coloured shape or texture (hue and pattern set by the class) at a random
 * place and scale on a random dark background, with pixel noise, so a CNN has to look at colour
 * and shape, not at a constant.
 */
export function renderSyntheticImage(label: number, numClasses: number, size: number, random: () => number): Buffer {
  const [r, g, b] = hueToRgb(label / numClasses);
  const pattern = PATTERNS[label % PATTERNS.length];
  const brightness = 0.75 + 0.25 * random();
  const background = [random() * 60, random() * 60, random() * 60];
  const cx = size * (0.3 + 0.4 * random());
  const cy = size * (0.3 + 0.4 * random());
  const radius = size * (0.2 + 0.15 * random());
  const period = Math.max(2, Math.round(size / (4 + 3 * random())));
  const pixels = Buffer.alloc(size * size * 3);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const dx = x - cx;
      const dy = y - cy;
      const inside =
        pattern === 'disc' ? dx * dx + dy * dy < radius * radius
        : pattern === 'square' ? Math.abs(dx) < radius && Math.abs(dy) < radius
        : pattern === 'stripes' ? Math.floor(y / period) % 2 === 0
        : (Math.floor(x / period) + Math.floor(y / period)) % 2 === 0;
      const noise = () => (random() - 0.5) * 40;
      const i = (y * size + x) * 3;
      const [pr, pg, pb] = inside ? [r * brightness, g * brightness, b * brightness] : background;
      pixels[i] = Math.max(0, Math.min(255, pr + noise()));
      pixels[i + 1] = Math.max(0, Math.min(255, pg + noise()));
      pixels[i + 2] = Math.max(0, Math.min(255, pb + noise()));
    }
  }
  return pixels;
}

/**
 * Writes the dataset as real PNG files in ImageFolder layout under `cacheDir`, once per spec
 * (the folder name is a hash of the spec), so training reads them through the same decode path
 * as user data. Concurrent workers each build in a staging folder; the first rename wins.
 */
export async function materializeSyntheticDataset(spec: SyntheticDataset, cacheDir: string): Promise<string> {
  const key = createHash('sha256').update(JSON.stringify([spec.numClasses, spec.imagesPerClass, spec.imageSize, spec.seed])).digest('hex');
  const root = path.join(cacheDir, key.slice(0, 16));
  if (await stat(root).then(() => true, () => false)) {
    // Its modification time is its last use: what the cache eviction keeps.
    const now = new Date();
    await utimes(root, now, now).catch(() => undefined);
    return root;
  }
  const staging = `${root}.staging-${randomUUID()}`;
  const random = seededRandom(spec.seed);
  try {
    for (let label = 0; label < spec.numClasses; label++) {
      const dir = path.join(staging, syntheticClassName(label, spec.numClasses));
      await mkdir(dir, { recursive: true });
      for (let i = 0; i < spec.imagesPerClass; i++) {
        const raw = renderSyntheticImage(label, spec.numClasses, spec.imageSize, random);
        await sharp(raw, { raw: { width: spec.imageSize, height: spec.imageSize, channels: 3 } })
          .png()
          .toFile(path.join(dir, `img-${String(i).padStart(4, '0')}.png`));
      }
    }
    await rename(staging, root).catch(async (error: NodeJS.ErrnoException) => {
      if (error.code !== 'ENOTEMPTY' && error.code !== 'EEXIST') throw error;
    });
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
  return root;
}
