// tfjs' truncated normal draw (tf.truncatedNormal: seedrandom's Alea, Marsaglia's polar method, values past two
// standard deviations redrawn), the same float32 values from one loop written straight into the wasm heap. A random
// ResNet-50 backbone's 23.5 M filter values: ~1.1 s through tfjs (its per-value calls, then a copy into the heap), ~0.65 s here.
import * as tf from '../tf.js';
import { heapTensor } from './tensor-values.js';

/** Johannes Baagøe's Mash, as seedrandom 3.0.5 seeds Alea with it. */
function mash(): (data: string) => number {
  let n = 0xefc8249d;
  return (data) => {
    for (let i = 0; i < data.length; i++) {
      n += data.charCodeAt(i);
      let h = 0.02519603282416938 * n;
      n = h >>> 0;
      h -= n;
      h *= n;
      n = h >>> 0;
      h -= n;
      n += h * 0x100000000;
    }
    return (n >>> 0) * 2.3283064365386963e-10;
  };
}

/** seedrandom 3.0.5's Alea state for `seed`: the generator's three fractions and its carry. */
function aleaState(seed: string): [number, number, number, number] {
  const hash = mash();
  const state = [hash(' '), hash(' '), hash(' ')].map((part) => {
    const seeded = part - hash(seed);
    return seeded < 0 ? seeded + 1 : seeded;
  });
  return [state[0], state[1], state[2], 1];
}

/** What tf.truncatedNormal(shape, mean, stdDev, 'float32', seed) writes, into `out` (seed must not be 0: tfjs reads that as none). */
function truncatedNormalInto(out: Float32Array, mean: number, stdDev: number, seed: number): void {
  if (!seed) throw new RangeError('truncatedNormalInto: seed 0 means Math.random to tfjs');
  // Alea's state in locals, its step written out twice below: as a closure per generator (seedrandom's way) it ran ~25% slower.
  let [s0, s1, s2, c] = aleaState(seed.toString());
  const upper = mean + stdDev * 2;
  const lower = mean - stdDev * 2;
  const n = out.length;
  let i = 0;
  while (i < n) {
    let x = 0;
    let y = 0;
    let valid = false;
    while (!valid) {
      let v1: number, v2: number, s: number;
      do {
        let t = 2091639 * s0 + c * 2.3283064365386963e-10;
        s0 = s1;
        s1 = s2;
        s2 = t - (c = t | 0);
        v1 = 2 * s2 - 1;
        t = 2091639 * s0 + c * 2.3283064365386963e-10;
        s0 = s1;
        s1 = s2;
        s2 = t - (c = t | 0);
        v2 = 2 * s2 - 1;
        s = v1 * v1 + v2 * v2;
      } while (s >= 1 || s === 0);
      const mul = Math.sqrt((-2.0 * Math.log(s)) / s);
      x = mean + stdDev * v1 * mul;
      y = mean + stdDev * v2 * mul;
      valid = x <= upper && x >= lower;
    }
    out[i++] = x;
    // tfjs keeps the pair's second value for its next call, when it is within range too.
    if (i < n && y <= upper && y >= lower) out[i++] = y;
  }
}

/** tf.truncatedNormal's float32 tensor, drawn straight into the wasm heap where that is the backend. */
export function truncatedNormal(shape: number[], mean: number, stdDev: number, seed: number): tf.Tensor {
  if (tf.getBackend() === 'wasm') return heapTensor(shape, (view) => truncatedNormalInto(view, mean, stdDev, seed));
  const values = new Float32Array(tf.util.sizeFromShape(shape));
  truncatedNormalInto(values, mean, stdDev, seed);
  return tf.tensor(values, shape, 'float32');
}
