import sharp from 'sharp';
import type { Preprocessing } from '../../schemas/model.js';

/** torchvision's ImageNet normalisation, for weights trained the torchvision way. */
export const IMAGENET_MEAN = [0.485, 0.456, 0.406] as const;
export const IMAGENET_STD = [0.229, 0.224, 0.225] as const;
/** Decompression-bomb guard: width x height above this is refused before decoding. */
export const MAX_INPUT_PIXELS = 80_000_000;

/**
 * The evaluation transform: resize the shorter side to `resizeAt224`/224 of the crop (256 for
 * IMAGENET1K_V1, 232 for V2: torchvision's `weights.transforms()`), center-crop, normalise.
 */
export function preprocessingFor(inputSize: number, resizeAt224 = 256): Preprocessing {
  return {
    resize: Math.round((inputSize * resizeAt224) / 224),
    crop: inputSize,
    interpolation: 'bilinear',
    mean: [...IMAGENET_MEAN],
    std: [...IMAGENET_STD],
  };
}

export class ImageDecodeError extends Error {}

export interface RandomTransform {
  randomResizedCrop: boolean;
  horizontalFlip: boolean;
  scale: readonly [number, number];
  ratio: readonly [number, number];
  random: () => number;
}

/** torchvision's RandomResizedCrop.get_params: area and log-uniform aspect, 10 tries, then center. */
function randomCropBox(width: number, height: number, transform: RandomTransform) {
  const area = width * height;
  const [logLow, logHigh] = [Math.log(transform.ratio[0]), Math.log(transform.ratio[1])];
  for (let attempt = 0; attempt < 10; attempt++) {
    const target = area * (transform.scale[0] + (transform.scale[1] - transform.scale[0]) * transform.random());
    const aspect = Math.exp(logLow + (logHigh - logLow) * transform.random());
    const w = Math.round(Math.sqrt(target * aspect));
    const h = Math.round(Math.sqrt(target / aspect));
    if (w > 0 && h > 0 && w <= width && h <= height) {
      return { left: Math.floor(transform.random() * (width - w + 1)), top: Math.floor(transform.random() * (height - h + 1)), width: w, height: h };
    }
  }
  const ratio = width / height;
  const [w, h] = ratio < transform.ratio[0] ? [width, Math.round(width / transform.ratio[0])] : ratio > transform.ratio[1] ? [Math.round(height * transform.ratio[1]), height] : [width, height];
  return { left: Math.floor((width - w) / 2), top: Math.floor((height - h) / 2), width: w, height: h };
}

/**
 * Decodes any image sharp reads (EXIF orientation applied; grey, palette, CMYK, alpha and 16-bit
 * become 8-bit sRGB) into a normalised HWC float32 crop.
 */
export async function decodeForModel(input: string | Buffer, preprocessing: Preprocessing, augment?: RandomTransform): Promise<Float32Array> {
  let rgb: Buffer;
  try {
    // failOn 'warning': a damaged image is an error, not a silently garbled training example.
    const meta = await sharp(input, { limitInputPixels: MAX_INPUT_PIXELS }).metadata();
    const swap = (meta.orientation ?? 1) >= 5;
    const [w, h] = swap ? [meta.height, meta.width] : [meta.width, meta.height];
    // rotate() before extract(): the crop box is in displayed (EXIF-oriented) coordinates.
    const oriented = sharp(input, { limitInputPixels: MAX_INPUT_PIXELS, failOn: 'warning' }).rotate();
    let pipeline;
    if (augment?.randomResizedCrop) {
      pipeline = oriented.extract(randomCropBox(w, h, augment)).resize(preprocessing.crop, preprocessing.crop, { fit: 'fill', kernel: 'linear' });
    } else {
      const scale = preprocessing.resize / Math.min(w, h);
      const [rw, rh] = [Math.max(preprocessing.crop, Math.round(w * scale)), Math.max(preprocessing.crop, Math.round(h * scale))];
      pipeline = oriented
        .resize(rw, rh, { fit: 'fill', kernel: 'linear' })
        .extract({ left: Math.floor((rw - preprocessing.crop) / 2), top: Math.floor((rh - preprocessing.crop) / 2), width: preprocessing.crop, height: preprocessing.crop });
    }
    if (augment?.horizontalFlip && augment.random() < 0.5) pipeline = pipeline.flop();
    rgb = await pipeline.toColourspace('srgb').removeAlpha().raw({ depth: 'uchar' }).toBuffer();
  } catch (error) {
    throw new ImageDecodeError((error as Error).message);
  }
  const table = normalisationTable(preprocessing);
  const out = new Float32Array(preprocessing.crop * preprocessing.crop * 3);
  for (let i = 0; i < out.length; i += 3) {
    out[i] = table[rgb[i]];
    out[i + 1] = table[256 + rgb[i + 1]];
    out[i + 2] = table[512 + rgb[i + 2]];
  }
  return out;
}

const normalisationTables = new WeakMap<Preprocessing, Float32Array>();

/** Every normalised value of a byte, per channel ([c * 256 + byte]): the arithmetic once per value, not once per pixel. */
function normalisationTable(preprocessing: Preprocessing): Float32Array {
  let table = normalisationTables.get(preprocessing);
  if (!table) {
    const { mean, std } = preprocessing;
    table = Float32Array.from({ length: 3 * 256 }, (_, i) => ((i % 256) / 255 - mean[Math.floor(i / 256)]) / std[Math.floor(i / 256)]);
    normalisationTables.set(preprocessing, table);
  }
  return table;
}
