import * as ort from 'onnxruntime-web';
import { decodeForModel } from '../../engine/data/preprocess.js';
import { Preprocessing } from '../../schemas/model.js';

/** The top-level fields of a protobuf message: field number to its values (varints as numbers, the rest as bytes). */
function fieldsOf(bytes: Uint8Array): Map<number, Array<number | Uint8Array>> {
  const fields = new Map<number, Array<number | Uint8Array>>();
  let at = 0;
  const varint = () => {
    let value = 0;
    for (let shift = 0; ; shift += 7) {
      const byte = bytes[at++];
      value += (byte & 0x7f) * 2 ** shift;
      if (byte < 0x80) return value;
    }
  };
  while (at < bytes.length) {
    const key = varint();
    const [field, wire] = [Math.floor(key / 8), key % 8];
    let value: number | Uint8Array;
    if (wire === 0) value = varint();
    else if (wire === 2) {
      const length = varint();
      value = bytes.subarray(at, at + length);
      at += length;
    } else if (wire === 5 || wire === 1) {
      value = bytes.subarray(at, (at += wire === 5 ? 4 : 8));
    } else throw new Error(`wire type ${wire} at byte ${at}`);
    fields.set(field, [...(fields.get(field) ?? []), value]);
  }
  return fields;
}

const text = (value: number | Uint8Array | undefined) => new TextDecoder().decode(value as Uint8Array);

/** What an ONNX file says about itself: IR version, opset of the default domain, and its metadata_props. */
export function onnxHeader(file: Uint8Array): { irVersion: number; opset: number; metadata: Record<string, string> } {
  const model = fieldsOf(file);
  const opsets = (model.get(8) ?? []).map((o) => fieldsOf(o as Uint8Array));
  const standard = opsets.find((o) => text(o.get(1)?.[0] ?? new Uint8Array()) === '');
  const metadata = Object.fromEntries(
    (model.get(14) ?? []).map((entry) => {
      const kv = fieldsOf(entry as Uint8Array);
      return [text(kv.get(1)?.[0]), text(kv.get(2)?.[0])];
    }),
  );
  return { irVersion: model.get(1)?.[0] as number, opset: standard?.get(2)?.[0] as number, metadata };
}

/** Image files preprocessed as an exported model's metadata says, as one NCHW float32 batch. */
export async function nchwOf(file: Uint8Array, images: string[]): Promise<Float32Array> {
  const preprocessing = Preprocessing.parse(JSON.parse(onnxHeader(file).metadata.preprocessing));
  const size = preprocessing.crop;
  const nchw = new Float32Array(images.length * 3 * size * size);
  for (const [n, image] of images.entries()) {
    const hwc = await decodeForModel(image, preprocessing);
    for (let i = 0; i < size * size; i++) for (let c = 0; c < 3; c++) nchw[(n * 3 + c) * size * size + i] = hwc[i * 3 + c];
  }
  return nchw;
}

/** Runs an exported model in ONNX Runtime (its WebAssembly build) on image files in one batch: each image's logits. */
export async function onnxLogits(file: Uint8Array, images: string[]): Promise<Float32Array[]> {
  const input = await nchwOf(file, images);
  const size = Math.sqrt(input.length / images.length / 3);
  const session = await ort.InferenceSession.create(file);
  try {
    const { logits } = await session.run({ input: new ort.Tensor('float32', input, [images.length, 3, size, size]) });
    const classes = logits.dims[1];
    const values = logits.data as Float32Array;
    return images.map((_, n) => values.slice(n * classes, (n + 1) * classes));
  } finally {
    await session.release();
  }
}

export function softmax(logits: Float32Array): Float32Array {
  const max = Math.max(...logits);
  const exps = logits.map((v) => Math.exp(v - max));
  const sum = exps.reduce((a, b) => a + b, 0);
  return exps.map((v) => v / sum);
}
