import { z } from 'zod';
/**
 * The safetensors container: an 8-byte little-endian header length, a JSON header mapping each tensor
 * name to {dtype, shape, data_offsets}, then the raw little-endian data. https://github.com/huggingface/safetensors
 */
export type SafetensorsDtype = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32';

export interface RawTensor {
  dtype: SafetensorsDtype;
  shape: number[];
  bytes: Uint8Array;
}

const BYTES_PER_ELEMENT: Record<SafetensorsDtype, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4 };
/** Refuse headers past this: a real one for ResNet-50 is ~40 KB, and the length field is attacker-controlled. */
const MAX_HEADER_BYTES = 100 * 1024 * 1024;

export class SafetensorsFormatError extends Error {}

const TensorEntry = z.object({
  dtype: z.string(),
  shape: z.array(z.number().int().min(0)),
  data_offsets: z.tuple([z.number().int(), z.number().int()]),
});
/** Tensor entries by name, beside an optional `__metadata__` map of strings. */
const SafetensorsHeader = z.record(z.string(), z.unknown());

export function parseSafetensors(file: Uint8Array): Map<string, RawTensor> {
  if (file.byteLength < 8) throw new SafetensorsFormatError('file is shorter than the 8-byte header length');
  const view = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const headerLength = Number(view.getBigUint64(0, true));
  if (headerLength > MAX_HEADER_BYTES || 8 + headerLength > file.byteLength) {
    throw new SafetensorsFormatError(`header length ${headerLength} does not fit a ${file.byteLength}-byte file`);
  }
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder().decode(file.subarray(8, 8 + headerLength)));
  } catch {
    throw new SafetensorsFormatError('header is not JSON');
  }
  const parsed = SafetensorsHeader.safeParse(json);
  if (!parsed.success) throw new SafetensorsFormatError(`header does not describe tensors: ${parsed.error.issues[0]?.message}`);
  const header = parsed.data;
  const dataStart = 8 + headerLength;
  const tensors = new Map<string, RawTensor>();
  for (const [name, raw] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const parsedEntry = TensorEntry.safeParse(raw);
    if (!parsedEntry.success) throw new SafetensorsFormatError(`${name}: not a tensor entry (${parsedEntry.error.issues[0]?.message})`);
    const entry = parsedEntry.data;
    const dtype = entry.dtype as SafetensorsDtype;
    if (!(dtype in BYTES_PER_ELEMENT)) throw new SafetensorsFormatError(`${name}: unsupported dtype ${entry.dtype}`);
    const [begin, end] = entry.data_offsets;
    const elements = entry.shape.reduce((a, b) => a * b, 1);
    if (end - begin !== elements * BYTES_PER_ELEMENT[dtype] || dataStart + end > file.byteLength || begin < 0) {
      throw new SafetensorsFormatError(`${name}: data offsets [${begin}, ${end}] do not match shape [${entry.shape}]`);
    }
    tensors.set(name, { dtype, shape: entry.shape, bytes: file.subarray(dataStart + begin, dataStart + end) });
  }
  return tensors;
}

export function serializeSafetensors(tensors: Map<string, RawTensor>, metadata?: Record<string, string>): Buffer {
  return Buffer.concat(safetensorsChunks(tensors, metadata));
}

/** The file in pieces: length, header, then each tensor's bytes as they are (written in order, never concatenated). */
export function safetensorsChunks(tensors: Map<string, RawTensor>, metadata?: Record<string, string>): Uint8Array[] {
  const header: Record<string, unknown> = metadata ? { __metadata__: metadata } : {};
  let offset = 0;
  for (const [name, t] of tensors) {
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.bytes.byteLength] };
    offset += t.bytes.byteLength;
  }
  let json = JSON.stringify(header);
  // Pad the header with spaces so the data starts 8-byte aligned, as the reference writer does.
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const headerBytes = Buffer.from(json);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(headerBytes.byteLength));
  return [prefix, headerBytes, ...[...tensors.values()].map((t) => t.bytes)];
}

function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >> 10) & 0x1f;
  const fraction = h & 0x3ff;
  if (exponent === 0) return sign * 2 ** -14 * (fraction / 1024);
  if (exponent === 0x1f) return fraction ? NaN : sign * Infinity;
  return sign * 2 ** (exponent - 15) * (1 + fraction / 1024);
}

/** Any floating-point tensor as float32 (copied, so the result is aligned and owned). */
export function toFloat32(t: RawTensor): Float32Array {
  const view = new DataView(t.bytes.buffer, t.bytes.byteOffset, t.bytes.byteLength);
  const n = t.bytes.byteLength / BYTES_PER_ELEMENT[t.dtype];
  const out = new Float32Array(n);
  switch (t.dtype) {
    case 'F32':
      for (let i = 0; i < n; i++) out[i] = view.getFloat32(i * 4, true);
      return out;
    case 'F64':
      for (let i = 0; i < n; i++) out[i] = view.getFloat64(i * 8, true);
      return out;
    case 'F16':
      for (let i = 0; i < n; i++) out[i] = halfToFloat(view.getUint16(i * 2, true));
      return out;
    case 'BF16': {
      const bits = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) bits[i] = view.getUint16(i * 2, true) << 16;
      return out;
    }
    default:
      throw new SafetensorsFormatError(`dtype ${t.dtype} is not a floating-point type`);
  }
}

export function float32Tensor(shape: number[], values: Float32Array): RawTensor {
  return { dtype: 'F32', shape, bytes: new Uint8Array(values.buffer, values.byteOffset, values.byteLength) };
}
