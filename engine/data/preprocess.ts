import sharp, { type Sharp } from 'sharp';
import type { Preprocessing } from '../../schemas/model.js';
import { mirrored, resizeBilinear, type RawImage } from './resample.js';

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

/** How decodeForModel resizes: cached CNN codes name it, so codes of an earlier decoder are not reused. */
export const RESAMPLING = 'pillow-bilinear';

export class ImageDecodeError extends Error {}

/** The raster formats a photo comes in (PIL opens them too). libvips also renders SVG and PDF: drawings, not photos. */
const PHOTO_FORMATS: ReadonlySet<string> = new Set(['jpeg', 'png', 'webp', 'gif', 'tiff', 'heif']);

/** Why an image of `format` is not read as a photo, or null when it is. */
export function notAPhoto(format: string | undefined): string | null {
  return format && PHOTO_FORMATS.has(format) ? null : `${format ?? 'an unknown format'} is not a photo format (${[...PHOTO_FORMATS].join(', ')})`;
}

export interface RandomTransform {
  randomResizedCrop: boolean;
  horizontalFlip: boolean;
  scale: readonly [number, number];
  ratio: readonly [number, number];
  random: () => number;
}

/** torchvision's RandomResizedCrop.get_params: area and log-uniform aspect, 10 tries, then center. */
export function randomCropBox(width: number, height: number, transform: RandomTransform) {
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

/** A side above this many times the resize target is first shrunk by libvips: memory and time stay bounded for big photos. */
const PRESHRINK_ABOVE = 4;
/** Nor is more than this decoded to raw pixels, whatever the aspect. */
const MAX_RAW_PIXELS = 16_000_000;

/**
 * `region` of `image` decoded to 8-bit sRGB pixels, at most `PRESHRINK_ABOVE` times `shorterSide` on its shorter
 * side (libvips shrinks bigger ones, JPEGs while decoding): the exact resize that follows reads at most this.
 */
async function decodeRegion(image: Sharp, region: { left: number; top: number; width: number; height: number }, shorterSide: number): Promise<RawImage> {
  const shrink = Math.max(
    Math.min(region.width, region.height) / (PRESHRINK_ABOVE * shorterSide),
    Math.sqrt((region.width * region.height) / MAX_RAW_PIXELS),
  );
  let pipeline = image.extract(region);
  if (shrink > 1)
    pipeline = pipeline.resize(Math.max(1, Math.round(region.width / shrink)), Math.max(1, Math.round(region.height / shrink)), { fit: 'fill', kernel: 'linear' });
  const { data, info } = await pipeline.toColourspace('srgb').removeAlpha().raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  return { pixels: data, width: info.width, height: info.height, channels: info.channels };
}

/** Python's round(): halves to even, as torchvision's CenterCrop rounds its offsets. */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * Decodes any image sharp reads (EXIF orientation applied; grey, palette, CMYK, alpha and 16-bit
 * become 8-bit sRGB) into a normalised HWC float32 crop, resized and cropped as torchvision's transforms do on
 * PIL images (Resize then CenterCrop; RandomResizedCrop's crop then resize; the flip last), with Pillow's resampling.
 */
export async function decodeForModel(input: string | Buffer, preprocessing: Preprocessing, augment?: RandomTransform): Promise<Float32Array> {
  let rgb: RawImage;
  try {
    // failOn 'warning': a damaged image is an error, not a silently garbled training example.
    const meta = await sharp(input, { limitInputPixels: MAX_INPUT_PIXELS }).metadata();
    const refusal = notAPhoto(meta.format);
    if (refusal) throw new Error(refusal);
    const swap = (meta.orientation ?? 1) >= 5;
    const [w, h] = swap ? [meta.height, meta.width] : [meta.width, meta.height];
    // rotate() before extract(): the crop box is in displayed (EXIF-oriented) coordinates.
    const oriented = sharp(input, { limitInputPixels: MAX_INPUT_PIXELS, failOn: 'warning' }).rotate();
    const { crop: size } = preprocessing;
    if (augment?.randomResizedCrop) {
      rgb = resizeBilinear(await decodeRegion(oriented, randomCropBox(w, h, augment), size), size, size);
    } else {
      // torchvision's Resize(int): the shorter side to `resize`, the longer truncated; CenterCrop's offsets rounded.
      const [rw, rh] = w <= h ? [preprocessing.resize, Math.trunc((preprocessing.resize * h) / w)] : [Math.trunc((preprocessing.resize * w) / h), preprocessing.resize];
      const centre = { left: roundHalfEven((rw - size) / 2), top: roundHalfEven((rh - size) / 2), width: size, height: size };
      rgb = resizeBilinear(await decodeRegion(oriented, { left: 0, top: 0, width: w, height: h }, preprocessing.resize), rw, rh, centre);
    }
    if (augment?.horizontalFlip && augment.random() < 0.5) rgb = mirrored(rgb);
  } catch (error) {
    throw new ImageDecodeError((error as Error).message);
  }
  const table = normalisationTable(preprocessing);
  const out = new Float32Array(preprocessing.crop * preprocessing.crop * 3);
  for (let i = 0; i < out.length; i += 3) {
    out[i] = table[rgb.pixels[i]];
    out[i + 1] = table[256 + rgb.pixels[i + 1]];
    out[i + 2] = table[512 + rgb.pixels[i + 2]];
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
