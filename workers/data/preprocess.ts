import sharp from 'sharp';

/** torchvision's ImageNet normalisation, for weights trained the torchvision way. */
export const IMAGENET_MEAN = [0.485, 0.456, 0.406] as const;
export const IMAGENET_STD = [0.229, 0.224, 0.225] as const;
/** Decompression-bomb guard: width x height above this is refused before decoding. */
export const MAX_INPUT_PIXELS = 80_000_000;

export interface Preprocessing {
  resize: number;
  crop: number;
  interpolation: 'bilinear';
  mean: readonly number[];
  std: readonly number[];
}

/** The evaluation transform: resize the shorter side to 256/224 of the crop, center-crop, normalise. */
export function preprocessingFor(inputSize: number): Preprocessing {
  return { resize: Math.round((inputSize * 256) / 224), crop: inputSize, interpolation: 'bilinear', mean: IMAGENET_MEAN, std: IMAGENET_STD };
}

export class ImageDecodeError extends Error {}

/**
 * Decodes any image sharp reads (EXIF orientation applied; grey, palette, CMYK, alpha and 16-bit
 * become 8-bit sRGB) into a normalised HWC float32 crop.
 */
export async function decodeForModel(input: string | Buffer, p: Preprocessing): Promise<Float32Array> {
  let rgb: Buffer;
  try {
    // failOn 'warning': a damaged image is an error, not a silently garbled training example.
    const oriented = sharp(input, { limitInputPixels: MAX_INPUT_PIXELS, failOn: 'warning' }).rotate();
    const meta = await sharp(input, { limitInputPixels: MAX_INPUT_PIXELS }).metadata();
    const swap = (meta.orientation ?? 1) >= 5;
    const [w, h] = swap ? [meta.height!, meta.width!] : [meta.width!, meta.height!];
    const scale = p.resize / Math.min(w, h);
    const [rw, rh] = [Math.max(p.crop, Math.round(w * scale)), Math.max(p.crop, Math.round(h * scale))];
    rgb = await oriented
      .resize(rw, rh, { fit: 'fill', kernel: 'linear' })
      .extract({ left: Math.floor((rw - p.crop) / 2), top: Math.floor((rh - p.crop) / 2), width: p.crop, height: p.crop })
      .toColourspace('srgb')
      .removeAlpha()
      .raw({ depth: 'uchar' })
      .toBuffer();
  } catch (error) {
    throw new ImageDecodeError((error as Error).message);
  }
  const out = new Float32Array(p.crop * p.crop * 3);
  for (let i = 0; i < out.length; i++) {
    const c = i % 3;
    out[i] = (rgb[i] / 255 - p.mean[c]) / p.std[c];
  }
  return out;
}
