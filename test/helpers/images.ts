import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { seededRandom } from '../../common/random.js';
import { renderSyntheticImage } from '../../engine/data/synthetic.js';

/** The unusable files of `writeMessyDataset`, with the reason the preflight must give. */
export const MESSY_BAD_FILES = {
  'cats/corrupt.jpg': 'corrupt',
  'cats/truncated.png': 'truncated',
  'dogs/notes.jpg': 'not_an_image',
  'dogs/empty.png': 'empty',
} as const;

/**
 * Two classes of real photos-to-be: good images in every colour mode a camera or an export tool
 * produces (CMYK JPEG, 16-bit PNG, grayscale, EXIF-rotated, alpha), plus the broken files above and
 * one exact duplicate.
 */
export async function writeMessyDataset(root: string): Promise<void> {
  const random = seededRandom(21);
  const base = (label: number) => sharp(renderSyntheticImage(label, 2, 48, random), { raw: { width: 48, height: 48, channels: 3 } });
  for (const [label, name] of ['cats', 'dogs'].entries()) {
    const dir = path.join(root, name);
    mkdirSync(dir, { recursive: true });
    for (let i = 0; i < 5; i++)
      await base(label)
        .png()
        .toFile(path.join(dir, `plain-${i}.png`));
    await base(label).toColourspace('cmyk').jpeg().toFile(path.join(dir, 'cmyk.jpg'));
    await base(label).toColourspace('rgb16').png().toFile(path.join(dir, 'deep-16bit.png'));
    await base(label).toColourspace('b-w').png().toFile(path.join(dir, 'grey.png'));
    await base(label).jpeg().withMetadata({ orientation: 6 }).toFile(path.join(dir, 'rotated.jpg'));
    await base(label).ensureAlpha(0.5).webp().toFile(path.join(dir, 'alpha.webp'));
  }
  copyFileSync(path.join(root, 'cats', 'plain-0.png'), path.join(root, 'cats', 'plain-0-copy.png'));
  const jpeg = await base(0).jpeg().toBuffer();
  for (let i = 400; i < 900 && i < jpeg.length - 2; i++) jpeg[i] = (i * 13) % 256;
  writeFileSync(path.join(root, 'cats', 'corrupt.jpg'), jpeg);
  const png = await base(0).png().toBuffer();
  writeFileSync(path.join(root, 'cats', 'truncated.png'), png.subarray(0, Math.floor(png.length / 2)));
  writeFileSync(path.join(root, 'dogs', 'notes.jpg'), 'meeting notes, saved with the wrong name');
  writeFileSync(path.join(root, 'dogs', 'empty.png'), '');
}
