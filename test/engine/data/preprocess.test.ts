import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { seededRandom } from '../../../common/random.js';
import {
  decodeForModel,
  ImageDecodeError,
  IMAGENET_MEAN,
  IMAGENET_STD,
  MAX_INPUT_PIXELS,
  preprocessingFor,
  randomCropBox,
} from '../../../engine/data/preprocess.js';
import { tempDir, torchReference } from '../../helpers/torch.js';

const p32 = preprocessingFor(32);
/** Back to 0..255 RGB at (row, column) of a decoded crop. */
function pixel(crop: Float32Array, size: number, row: number, column: number): number[] {
  const i = (row * size + column) * 3;
  return [0, 1, 2].map((c) => Math.round((crop[i + c] * IMAGENET_STD[c] + IMAGENET_MEAN[c]) * 255));
}

describe('decoding for the model', () => {
  it('applies EXIF orientation before cropping', async () => {
    // Stored 40x20, left half red, right half blue, tagged "rotate 90 degrees clockwise to display".
    const raw = Buffer.alloc(40 * 20 * 3);
    for (let y = 0; y < 20; y++) for (let x = 0; x < 40; x++) raw.set(x < 20 ? [255, 0, 0] : [0, 0, 255], (y * 40 + x) * 3);
    const jpeg = await sharp(raw, { raw: { width: 40, height: 20, channels: 3 } }).jpeg({ quality: 100 }).withMetadata({ orientation: 6 }).toBuffer();
    const crop = await decodeForModel(jpeg, p32);
    const [top, bottom] = [pixel(crop, 32, 1, 16), pixel(crop, 32, 30, 16)];
    assert.ok(top[0] > 200 && top[2] < 60, `top is red once rotated: ${top}`);
    assert.ok(bottom[2] > 200 && bottom[0] < 60, `bottom is blue once rotated: ${bottom}`);
  });

  it('turns 16-bit, grayscale, CMYK, alpha and palette images into 8-bit sRGB', async () => {
    const red = () => sharp({ create: { width: 40, height: 40, channels: 3, background: { r: 255, g: 0, b: 0 } } });
    const cases: Array<[string, Buffer, (rgb: number[]) => boolean]> = [
      ['16-bit PNG', await red().toColourspace('rgb16').png().toBuffer(), ([r, g, b]) => r === 255 && g === 0 && b === 0],
      ['grayscale PNG', await red().toColourspace('b-w').png().toBuffer(), ([r, g, b]) => r === g && g === b && r > 0],
      ['CMYK JPEG', await red().toColourspace('cmyk').jpeg({ quality: 100 }).toBuffer(), ([r, g, b]) => r > 200 && g < 60 && b < 60],
      ['RGBA WebP', await red().ensureAlpha(0.3).webp({ lossless: true }).toBuffer(), ([r, g, b]) => r === 255 && g === 0 && b === 0],
      ['palette PNG', await red().png({ palette: true }).toBuffer(), ([r, g, b]) => r > 240 && g < 16 && b < 16],
    ];
    for (const [name, bytes, expected] of cases) {
      const crop = await decodeForModel(bytes, p32);
      assert.equal(crop.length, 32 * 32 * 3, name);
      assert.ok(expected(pixel(crop, 32, 16, 16)), `${name}: ${pixel(crop, 32, 16, 16)}`);
    }
  });

  it('augments reproducibly: random resized crops follow the seed, flips mirror', async () => {
    const raw = Buffer.alloc(64 * 64 * 3);
    for (let y = 0; y < 64; y++) for (let x = 0; x < 64; x++) raw.set([x * 4, y * 4, 128], (y * 64 + x) * 3);
    const png = await sharp(raw, { raw: { width: 64, height: 64, channels: 3 } }).png().toBuffer();
    const crop = (seed: number) =>
      decodeForModel(png, p32, { randomResizedCrop: true, horizontalFlip: false, scale: [0.08, 1], ratio: [3 / 4, 4 / 3], random: seededRandom(seed) });
    assert.deepEqual(await crop(1), await crop(1));
    assert.notDeepEqual(await crop(1), await crop(2));
    const flipped = await decodeForModel(png, p32, { randomResizedCrop: false, horizontalFlip: true, scale: [1, 1], ratio: [1, 1], random: () => 0 });
    const plain = await decodeForModel(png, p32);
    // sharp flips before resizing, so the mirror is exact up to resampling at the crop's edges.
    for (const row of [5, 20]) {
      const [a, b] = [pixel(flipped, 32, row, 0), pixel(plain, 32, row, 31)];
      assert.ok(a.every((v, c) => Math.abs(v - b[c]) <= 8), `${a} mirrors ${b}`);
    }
    assert.ok(pixel(flipped, 32, 5, 0)[0] > pixel(flipped, 32, 5, 31)[0], 'red grows to the left once flipped');
  });

  it('normalises every byte of every channel as (byte / 255 - mean) / std, rounded once to float32', async () => {
    // 16 x 16 blocks of 8 x 8 pixels, block i holding bytes [i, 255 - i, 7i mod 256]: every byte in every channel.
    const bytesOf = (i: number) => [i, 255 - i, (i * 7) % 256];
    const raw = Buffer.alloc(128 * 128 * 3);
    for (let y = 0; y < 128; y++) for (let x = 0; x < 128; x++) raw.set(bytesOf((y >> 3) * 16 + (x >> 3)), (y * 128 + x) * 3);
    const png = await sharp(raw, { raw: { width: 128, height: 128, channels: 3 } }).png().toBuffer();
    const plain = { resize: 128, crop: 128, interpolation: 'bilinear' as const };
    for (const preprocessing of [{ ...plain, mean: [...IMAGENET_MEAN], std: [...IMAGENET_STD] }, { ...plain, mean: [0.1, 0.5, 0.9], std: [0.3, 0.7, 0.05] }]) {
      const crop = await decodeForModel(png, preprocessing);
      for (let i = 0; i < 256; i++) {
        const at = (((i >> 4) * 8 + 4) * 128 + (i % 16) * 8 + 4) * 3;
        const expected = bytesOf(i).map((byte, c) => Math.fround((byte / 255 - preprocessing.mean[c]) / preprocessing.std[c]));
        assert.deepEqual([...crop.subarray(at, at + 3)], expected, `block ${i}`);
      }
    }
  });

  it('refuses a decompression bomb before decoding it', async () => {
    const side = Math.ceil(Math.sqrt(MAX_INPUT_PIXELS)) + 16;
    const bomb = await sharp({ create: { width: side, height: side, channels: 3, background: '#000' } }).png({ compressionLevel: 1 }).toBuffer();
    assert.ok(bomb.length < 20 * 1024 * 1024, `a ${bomb.length}-byte file`);
    await assert.rejects(decodeForModel(bomb, p32), (error: Error) => error instanceof ImageDecodeError && /pixel limit/i.test(error.message));
  });

  it('refuses drawings: an SVG is not decoded as a photo, a GIF is', async () => {
    const svg = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"><rect width="64" height="64" fill="red"/></svg>');
    assert.equal((await sharp(svg).metadata()).format, 'svg', 'libvips would render it');
    await assert.rejects(
      decodeForModel(svg, p32),
      (error: Error) => error instanceof ImageDecodeError && error.message.startsWith('svg is not a photo format (jpeg, png, webp'),
    );
    const gif = await sharp({ create: { width: 40, height: 40, channels: 3, background: '#0f0' } }).gif().toBuffer();
    // abs: pure green's red and blue come back as -0 from the normalisation's rounding.
    assert.deepEqual(pixel(await decodeForModel(gif, p32), 32, 5, 5).map(Math.abs), [0, 255, 0]);
  });

  it('resizes the shorter side to 256/224 of the crop and center-crops, as torchvision does', () => {
    assert.deepEqual(preprocessingFor(224), { resize: 256, crop: 224, interpolation: 'bilinear', mean: IMAGENET_MEAN, std: IMAGENET_STD });
    assert.equal(preprocessingFor(112).resize, 128);
  });
});

describe('decoding as torchvision does on PIL images', () => {
  const dir = tempDir('pixels');
  after(() => rmSync(dir, { recursive: true, force: true }));
  /** A PNG of `width` x `height` seeded noise over a gradient: every resampling weight shows in its bytes. */
  async function photo(name: string, width: number, height: number, channels: 1 | 3): Promise<string> {
    const random = seededRandom(width * 7919 + height);
    const raw = Buffer.alloc(width * height * channels);
    for (let i = 0; i < raw.length; i++) raw[i] = Math.min(255, Math.floor((((i / channels) % width) / width) * 128 + random() * 128));
    const file = path.join(dir, name);
    await sharp(raw, { raw: { width, height, channels } }).png().toFile(file);
    return file;
  }
  function torchvisionBytes(args: string[], images: string[], size: number): Buffer[] {
    const out = path.join(dir, 'pixels.u8');
    torchReference(['pixels', '--out', out, '--size', String(size), ...args, ...images]);
    const bytes = readFileSync(out);
    return images.map((_, i) => bytes.subarray(i * size * size * 3, (i + 1) * size * size * 3));
  }
  const bytesOf = (crop: Float32Array, size: number) =>
    Buffer.from(Array.from({ length: size * size }, (_, i) => pixel(crop, size, Math.floor(i / size), i % size)).flat());

  it('resizes and center-crops to the byte (upscaled 28 px grey photos, downscaled ones, odd crop offsets)', async () => {
    const cases: Array<[string, number, number, 1 | 3, number]> = [
      ['fashion.png', 28, 28, 1, 32],
      ['fashion-112.png', 28, 28, 1, 112],
      ['photo.png', 500, 375, 3, 224],
      ['tall.png', 201, 430, 3, 64],
      // Resized to 39 x 37: CenterCrop's offset (39 - 32) / 2 rounds half to even, to 4.
      ['odd-offset.png', 32, 30, 3, 32],
      // Already 37 px on its shorter side: no resize, the crop alone.
      ['unresized.png', 50, 37, 3, 32],
    ];
    for (const [name, width, height, channels, size] of cases) {
      const file = await photo(name, width, height, channels);
      const preprocessing = preprocessingFor(size);
      const [expected] = torchvisionBytes(['--resize', String(preprocessing.resize)], [file], size);
      assert.deepEqual(bytesOf(await decodeForModel(file, preprocessing), size), expected, name);
    }
  });

  it("crops RandomResizedCrop's box, resizes it and flips to the byte", async () => {
    const file = await photo('augmented.png', 90, 70, 3);
    for (const seed of [1, 2, 3]) {
      const augment = { randomResizedCrop: true, horizontalFlip: false, scale: [0.08, 1], ratio: [3 / 4, 4 / 3] } as const;
      const box = randomCropBox(90, 70, { ...augment, random: seededRandom(seed) });
      const [expected] = torchvisionBytes(['--box', ...[box.left, box.top, box.width, box.height].map(String)], [file], 32);
      assert.deepEqual(bytesOf(await decodeForModel(file, p32, { ...augment, random: seededRandom(seed) }), 32), expected, `seed ${seed}`);
    }
    const [flipped] = torchvisionBytes(['--resize', String(p32.resize), '--flip'], [file], 32);
    const flip = { randomResizedCrop: false, horizontalFlip: true, scale: [1, 1], ratio: [1, 1], random: () => 0 } as const;
    assert.deepEqual(bytesOf(await decodeForModel(file, p32, flip), 32), flipped);
  });

  it('shrinks a photo far bigger than the crop with libvips first, within a level of torchvision on average', async () => {
    const file = await photo('big.png', 2400, 1800, 3);
    const preprocessing = preprocessingFor(64);
    const [expected] = torchvisionBytes(['--resize', String(preprocessing.resize)], [file], 64);
    const ours = bytesOf(await decodeForModel(file, preprocessing), 64);
    const meanDifference = ours.reduce((sum, byte, i) => sum + Math.abs(byte - expected[i]), 0) / ours.length;
    assert.ok(meanDifference < 1, `mean difference ${meanDifference} levels`);
  });
});
