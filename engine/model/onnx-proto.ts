/**
 * The few ONNX protobuf messages an exported classifier needs, encoded by hand (field numbers from
 * onnx/onnx.proto). Messages are lists of byte pieces with their total length, so a 100 MB initializer
 * is referenced, never copied, until the store writes it.
 */
export interface Encoded {
  parts: Uint8Array[];
  length: number;
}

const FLOAT_TENSOR = 1;
const AttributeType = { Int: 2, Ints: 7 } as const;

function varint(value: number | bigint): Uint8Array {
  let v = BigInt.asUintN(64, BigInt(value));
  const bytes: number[] = [];
  do {
    const low = Number(v & 0x7fn);
    v >>= 7n;
    bytes.push(v ? low | 0x80 : low);
  } while (v);
  return Uint8Array.from(bytes);
}

const key = (field: number, wireType: 0 | 2) => varint((field << 3) | wireType);

export class Message {
  private readonly parts: Uint8Array[] = [];
  private length = 0;

  private push(...pieces: Uint8Array[]): this {
    for (const piece of pieces) {
      this.parts.push(piece);
      this.length += piece.byteLength;
    }
    return this;
  }

  int(field: number, value: number): this {
    return this.push(key(field, 0), varint(value));
  }

  bytes(field: number, value: Uint8Array): this {
    return this.push(key(field, 2), varint(value.byteLength), value);
  }

  string(field: number, value: string): this {
    return this.bytes(field, new TextEncoder().encode(value));
  }

  message(field: number, value: Message): this {
    const { parts, length } = value.encoded();
    return this.push(key(field, 2), varint(length), ...parts);
  }

  encoded(): Encoded {
    return { parts: this.parts, length: this.length };
  }
}

/** AttributeProto: name 1, i 3, ints 8, type 20 (the exported graph has integer attributes only). */
export type AttributeValue = number | number[];

export function attribute(name: string, value: AttributeValue): Message {
  const m = new Message().string(1, name);
  if (Array.isArray(value)) {
    for (const v of value) m.int(8, v);
    return m.int(20, AttributeType.Ints);
  }
  return m.int(3, value).int(20, AttributeType.Int);
}

/** NodeProto: input 1, output 2, name 3, op_type 4, attribute 5. */
export function node(opType: string, name: string, inputs: string[], outputs: string[], attributes: Record<string, AttributeValue> = {}) {
  const m = new Message();
  for (const input of inputs) m.string(1, input);
  for (const output of outputs) m.string(2, output);
  m.string(3, name).string(4, opType);
  for (const [attrName, value] of Object.entries(attributes)) m.message(5, attribute(attrName, value));
  return m;
}

/** TensorProto.DataType of the arrays an exported graph holds. */
const DATA_TYPES = { Float32Array: FLOAT_TENSOR, Uint8Array: 2, Int8Array: 3 } as const;

/** TensorProto: dims 1, data_type 2, name 8, raw_data 9 (little-endian, as ONNX requires). */
export function tensor(name: string, dims: number[], values: Float32Array | Uint8Array | Int8Array): Message {
  const m = new Message();
  for (const d of dims) m.int(1, d);
  return m
    .int(2, DATA_TYPES[values.constructor.name as keyof typeof DATA_TYPES])
    .string(8, name)
    .bytes(9, new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
}

/** ValueInfoProto of a float tensor; a string dimension is symbolic (dim_param), a number fixed (dim_value). */
export function valueInfo(name: string, dims: Array<number | string>): Message {
  const shape = new Message();
  for (const d of dims) shape.message(1, typeof d === 'number' ? new Message().int(1, d) : new Message().string(2, d));
  const tensorType = new Message().int(1, FLOAT_TENSOR).message(2, shape);
  return new Message().string(1, name).message(2, new Message().message(1, tensorType));
}

/** StringStringEntryProto: key 1, value 2. */
export const metadataEntry = (k: string, v: string) => new Message().string(1, k).string(2, v);
