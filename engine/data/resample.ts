/**
 * Pillow's bilinear resize, byte for byte: what torchvision's Resize, CenterCrop's input and RandomResizedCrop run
 * on PIL images, so weights trained with torchvision see the same pixels here. Antialiased (the triangle widens by
 * the downscale factor), separable (horizontal pass, then vertical), each pass rounded to 8 bits with Pillow's
 * 22-bit fixed-point weights (libImaging/Resample.c). libvips' linear kernel places its samples differently: a
 * 28 px Fashion-MNIST photo upscaled to 37 px differed by 9 levels on average.
 */
const PRECISION_BITS = 22;
const HALF = 1 << (PRECISION_BITS - 1);

/** Per output index: the first input index, how many it reads, and their fixed-point weights (`width` apart). */
interface Taps {
  first: Int32Array;
  count: Int32Array;
  weights: Int32Array;
  width: number;
}

function bilinearTaps(inSize: number, outSize: number): Taps {
  const scale = inSize / outSize;
  // The triangle's support (1) widened by the downscale factor.
  const support = Math.max(1, scale);
  const reciprocal = 1 / support;
  const width = Math.ceil(support) * 2 + 1;
  const taps: Taps = { first: new Int32Array(outSize), count: new Int32Array(outSize), weights: new Int32Array(outSize * width), width };
  const exact = new Float64Array(width);
  for (let out = 0; out < outSize; out++) {
    const center = (out + 0.5) * scale;
    const first = Math.max(0, Math.trunc(center - support + 0.5));
    const count = Math.min(inSize, Math.trunc(center + support + 0.5)) - first;
    let sum = 0;
    for (let i = 0; i < count; i++) {
      const distance = Math.abs((i + first - center + 0.5) * reciprocal);
      exact[i] = distance < 1 ? 1 - distance : 0;
      sum += exact[i];
    }
    for (let i = 0; i < count; i++) {
      const weight = sum === 0 ? exact[i] : exact[i] / sum;
      // Pillow rounds half away from zero; a triangle's weights are never negative.
      taps.weights[out * width + i] = Math.trunc(weight * (1 << PRECISION_BITS) + 0.5);
    }
    taps.first[out] = first;
    taps.count[out] = count;
  }
  return taps;
}

// Bilinear weights are never negative: a sum is at least 0 and its top byte at most 255 (the weights sum to 2^22).
const clip8 = (sum: number) => {
  const byte = sum >> PRECISION_BITS;
  return byte > 255 ? 255 : byte;
};

/** An 8-bit image, `channels` interleaved, row after row. */
export interface RawImage {
  pixels: Uint8Array;
  width: number;
  height: number;
  channels: number;
}

/** A rectangle of an image, in pixels. */
export interface Window {
  left: number;
  top: number;
  width: number;
  height: number;
}

/** The horizontal pass over the rows the vertical one reads, the window's columns only (Pillow skips a pass whose size does not change). */
function horizontalPass(image: RawImage, width: number, rows: { first: number; count: number }, window: Window): Uint8Array {
  const { channels } = image;
  const stride = window.width * channels;
  const across = new Uint8Array(stride * rows.count);
  if (width === image.width) {
    for (let y = 0; y < rows.count; y++) {
      const from = ((rows.first + y) * image.width + window.left) * channels;
      across.set(image.pixels.subarray(from, from + stride), y * stride);
    }
  } else {
    const horizontal = bilinearTaps(image.width, width);
    for (let y = 0; y < rows.count; y++) {
      const row = (rows.first + y) * image.width * channels;
      for (let x = 0; x < window.width; x++) {
        const out = window.left + x;
        const weights = out * horizontal.width;
        const count = horizontal.count[out];
        const at = row + horizontal.first[out] * channels;
        if (channels === 3) {
          let [r, g, b] = [HALF, HALF, HALF];
          for (let i = 0, p = at; i < count; i++, p += 3) {
            const weight = horizontal.weights[weights + i];
            r += image.pixels[p] * weight;
            g += image.pixels[p + 1] * weight;
            b += image.pixels[p + 2] * weight;
          }
          across[y * stride + x * 3] = clip8(r);
          across[y * stride + x * 3 + 1] = clip8(g);
          across[y * stride + x * 3 + 2] = clip8(b);
        } else {
          for (let c = 0; c < channels; c++) {
            let sum = HALF;
            for (let i = 0; i < count; i++) sum += image.pixels[at + i * channels + c] * horizontal.weights[weights + i];
            across[y * stride + x * channels + c] = clip8(sum);
          }
        }
      }
    }
  }
  return across;
}

/**
 * `image` resized to `width` x `height` as Pillow's `Image.resize(size, Image.BILINEAR)` does it, then cropped to
 * `window` (by default the whole): only the window's pixels are computed, each as the whole resize computes it.
 */
export function resizeBilinear(image: RawImage, width: number, height: number, window: Window = { left: 0, top: 0, width, height }): RawImage {
  const { channels } = image;
  const stride = window.width * channels;
  if (height === image.height) {
    const across = horizontalPass(image, width, { first: window.top, count: window.height }, window);
    return { pixels: across, width: window.width, height: window.height, channels };
  }
  const vertical = bilinearTaps(image.height, height);
  const last = window.top + window.height - 1;
  const rows = { first: vertical.first[window.top], count: vertical.first[last] + vertical.count[last] - vertical.first[window.top] };
  const across = horizontalPass(image, width, rows, window);
  const pixels = new Uint8Array(stride * window.height);
  for (let y = 0; y < window.height; y++) {
    const out = window.top + y;
    const weights = out * vertical.width;
    const count = vertical.count[out];
    const first = (vertical.first[out] - rows.first) * stride;
    for (let x = 0; x < stride; x++) {
      let sum = HALF;
      for (let i = 0, at = first + x; i < count; i++, at += stride) sum += across[at] * vertical.weights[weights + i];
      pixels[y * stride + x] = clip8(sum);
    }
  }
  return { pixels, width: window.width, height: window.height, channels };
}

/** `image` mirrored left to right (torchvision's RandomHorizontalFlip). */
export function mirrored(image: RawImage): RawImage {
  const { width, height, channels } = image;
  const pixels = new Uint8Array(image.pixels.length);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) {
      const from = (y * width + x) * channels;
      pixels.set(image.pixels.subarray(from, from + channels), (y * width + width - 1 - x) * channels);
    }
  return { ...image, pixels };
}
