/**
 * The subset of Python's pickle that a torch.save'd state_dict uses (protocol 2, and 4's framing),
 * read into plain values. Nothing is executed: the few callables a state_dict names (OrderedDict,
 * torch's tensor and storage rebuilders) become data, and every other opcode or global is refused
 * with its name. https://github.com/python/cpython/blob/main/Lib/pickletools.py documents the opcodes.
 */

export class PickleRefusedError extends Error {}

/** A tensor as torch._utils._rebuild_tensor_v2 describes it: a view into a storage. */
export interface TensorView {
  kind: 'tensor';
  storage: StorageRef;
  offset: number;
  size: number[];
  stride: number[];
}

/** A storage, by its key in the archive's data/ folder. */
export interface StorageRef {
  kind: 'storage';
  dtype: StorageDtype;
  key: string;
  numel: number;
}

export type StorageDtype = 'F32' | 'F16' | 'BF16' | 'F64' | 'I64' | 'I32';

const STORAGE_TYPES: Record<string, StorageDtype> = {
  FloatStorage: 'F32',
  HalfStorage: 'F16',
  BFloat16Storage: 'BF16',
  DoubleStorage: 'F64',
  LongStorage: 'I64',
  IntStorage: 'I32',
};

/** The only globals a state_dict needs; any other is refused by name. */
const ALLOWED_GLOBALS = new Set([
  'collections.OrderedDict',
  'torch._utils._rebuild_tensor_v2',
  'torch._utils._rebuild_parameter',
  ...Object.keys(STORAGE_TYPES).map((name) => `torch.${name}`),
]);

interface Global {
  kind: 'global';
  name: string;
}

type Value = null | boolean | number | bigint | string | Uint8Array | Value[] | Map<Value, Value> | Global | TensorView | StorageRef | Mark;
interface Mark {
  kind: 'mark';
}
const MARK: Mark = { kind: 'mark' };

const isKind = <K extends string>(value: Value, kind: K): value is Extract<Value, { kind: K }> =>
  typeof value === 'object' &&
  value !== null &&
  !(value instanceof Uint8Array) &&
  !Array.isArray(value) &&
  !(value instanceof Map) &&
  value.kind === kind;

const OPCODE_NAMES: Record<number, string> = {
  0x63: 'GLOBAL',
  0x93: 'STACK_GLOBAL',
  0x81: 'NEWOBJ',
  0x92: 'NEWOBJ_EX',
  0x69: 'INST',
  0x6f: 'OBJ',
};

/** Reads the pickle's bytes: each call takes its operand from the current position on. */
class Reader {
  at = 0;
  private readonly view: DataView;
  private readonly decoder = new TextDecoder('utf-8', { fatal: true });
  constructor(private readonly bytes: Uint8Array) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  private need(n: number): number {
    if (this.at + n > this.bytes.byteLength) throw new PickleRefusedError('the pickle ends in the middle of an opcode');
    this.at += n;
    return this.at - n;
  }
  u8 = () => this.bytes[this.need(1)];
  u16 = () => this.view.getUint16(this.need(2), true);
  u32 = () => this.view.getUint32(this.need(4), true);
  i32 = () => this.view.getInt32(this.need(4), true);
  f64 = () => this.view.getFloat64(this.need(8), false);
  take = (n: number) => this.bytes.subarray(this.need(n), this.at);
  text = (n: number) => this.decoder.decode(this.take(n));
  line = () => {
    const end = this.bytes.indexOf(0x0a, this.at);
    if (end < 0) throw new PickleRefusedError('a GLOBAL without its newline');
    return this.text(end - this.at + 1).slice(0, -1);
  };
  /** LONG1: little-endian two's complement; a number where it fits. */
  long = () => {
    const digits = this.take(this.u8());
    let value = 0n;
    for (let i = digits.length - 1; i >= 0; i--) value = (value << 8n) | BigInt(digits[i]);
    if (digits.length && digits[digits.length - 1] & 0x80) value -= 1n << BigInt(8 * digits.length);
    return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value;
  };
}

/** The pickle machine's stack and memo. */
class Machine {
  readonly stack: Value[] = [];
  readonly memo = new Map<number, Value>();
  pop(): Value {
    const top = this.stack.pop();
    if (top === undefined) throw new PickleRefusedError('the pickle pops an empty stack');
    return top;
  }
  top(): Value {
    if (this.stack.length === 0) throw new PickleRefusedError('the pickle reads an empty stack');
    return this.stack[this.stack.length - 1];
  }
  push = (value: Value) => void this.stack.push(value);
  popMark(): Value[] {
    const index = this.stack.lastIndexOf(MARK);
    if (index < 0) throw new PickleRefusedError('the pickle has no MARK where one is needed');
    return this.stack.splice(index).slice(1);
  }
  get(key: number): Value {
    const value = this.memo.get(key);
    if (value === undefined) throw new PickleRefusedError(`the pickle reads memo ${key} before writing it`);
    return value;
  }
  setItems(items: Value[]): void {
    const target = this.top();
    if (!(target instanceof Map)) throw new PickleRefusedError('SETITEM(S) on something that is not a dict');
    for (let i = 0; i + 1 < items.length; i += 2) target.set(items[i], items[i + 1]);
  }
  append(items: Value[]): void {
    const list = this.top();
    if (!Array.isArray(list)) throw new PickleRefusedError('APPEND(S) to something that is not a list');
    list.push(...items);
  }
  tuple(n: number): void {
    if (this.stack.length < n) throw new PickleRefusedError('a TUPLE opcode on too short a stack');
    this.push(this.stack.splice(this.stack.length - n));
  }
}

function global(module: string, name: string): Global {
  const full = `${module}.${name}`;
  if (!ALLOWED_GLOBALS.has(full)) throw new PickleRefusedError(`refused: the pickle names the global ${full}, which no state_dict needs`);
  return { kind: 'global', name: full };
}

type Op = (m: Machine, r: Reader) => void;

/** Every opcode a state_dict's pickle uses, by its byte; any other is refused. */
const OPS: Record<number, Op> = {
  0x80: (_m, r) => void r.u8(), // PROTO
  0x95: (_m, r) => void r.take(8), // FRAME
  0x28: (m) => m.push(MARK), // MARK
  0x7d: (m) => m.push(new Map()), // EMPTY_DICT
  0x29: (m) => m.push([]), // EMPTY_TUPLE
  0x5d: (m) => m.push([]), // EMPTY_LIST
  0x63: (m, r) => m.push(global(r.line(), r.line())), // GLOBAL
  0x93: (m) => {
    // STACK_GLOBAL
    const name = m.pop();
    const module = m.pop();
    if (typeof module !== 'string' || typeof name !== 'string') throw new PickleRefusedError('STACK_GLOBAL without two strings');
    m.push(global(module, name));
  },
  0x71: (m, r) => m.memo.set(r.u8(), m.top()), // BINPUT
  0x72: (m, r) => m.memo.set(r.u32(), m.top()), // LONG_BINPUT
  0x94: (m) => m.memo.set(m.memo.size, m.top()), // MEMOIZE
  0x68: (m, r) => m.push(m.get(r.u8())), // BINGET
  0x6a: (m, r) => m.push(m.get(r.u32())), // LONG_BINGET
  0x58: (m, r) => m.push(r.text(r.u32())), // BINUNICODE
  0x8c: (m, r) => m.push(r.text(r.u8())), // SHORT_BINUNICODE
  0x54: (m, r) => m.push(r.text(r.i32())), // BINSTRING
  0x55: (m, r) => m.push(r.text(r.u8())), // SHORT_BINSTRING
  0x43: (m, r) => m.push(r.take(r.u8())), // SHORT_BINBYTES
  0x42: (m, r) => m.push(r.take(r.u32())), // BINBYTES
  0x4a: (m, r) => m.push(r.i32()), // BININT
  0x4b: (m, r) => m.push(r.u8()), // BININT1
  0x4d: (m, r) => m.push(r.u16()), // BININT2
  0x8a: (m, r) => m.push(r.long()), // LONG1
  0x47: (m, r) => m.push(r.f64()), // BINFLOAT
  0x4e: (m) => m.push(null), // NONE
  0x88: (m) => m.push(true), // NEWTRUE
  0x89: (m) => m.push(false), // NEWFALSE
  0x74: (m) => m.push(m.popMark()), // TUPLE
  0x85: (m) => m.tuple(1), // TUPLE1
  0x86: (m) => m.tuple(2), // TUPLE2
  0x87: (m) => m.tuple(3), // TUPLE3
  0x73: (m) => {
    // SETITEM
    const value = m.pop();
    m.setItems([m.pop(), value]);
  },
  0x75: (m) => m.setItems(m.popMark()), // SETITEMS
  0x61: (m) => m.append([m.pop()]), // APPEND
  0x65: (m) => m.append(m.popMark()), // APPENDS
  0x51: (m) => m.push(persistentStorage(m.pop())), // BINPERSID
  0x52: (m) => {
    // REDUCE
    const args = m.pop();
    m.push(reduce(m.pop(), args));
  },
  0x62: (m) => {
    // BUILD: an OrderedDict's attributes (a state_dict's _metadata), kept out of the result
    m.pop();
    if (!(m.top() instanceof Map)) throw new PickleRefusedError('BUILD on something that is not an OrderedDict');
  },
};

const STOP = 0x2e;

/** Unpickles `bytes`: storages stay references to the archive's data/ entries (persistent ids). */
function unpickle(bytes: Uint8Array): Value {
  const reader = new Reader(bytes);
  const machine = new Machine();
  for (;;) {
    const opcode = reader.u8();
    if (opcode === STOP) return machine.pop();
    const op = OPS[opcode];
    if (!op)
      throw new PickleRefusedError(
        `refused: pickle opcode ${OPCODE_NAMES[opcode] ?? `0x${opcode.toString(16).padStart(2, '0')}`} at byte ${reader.at - 1}, which no state_dict needs`,
      );
    op(machine, reader);
  }
}

function persistentStorage(id: Value): StorageRef {
  if (!Array.isArray(id) || id[0] !== 'storage' || id.length < 5) throw new PickleRefusedError('a persistent id that is not a storage');
  const [, type, key, , numel] = id;
  if (!isKind(type, 'global') || typeof key !== 'string' || typeof numel !== 'number')
    throw new PickleRefusedError('a storage id of an unexpected shape');
  const dtype = STORAGE_TYPES[type.name.replace(/^torch\./, '')];
  if (!dtype) throw new PickleRefusedError(`refused: storage type ${type.name}`);
  if (!/^[\w.-]{1,64}$/.test(key)) throw new PickleRefusedError(`a storage key that is not a plain name: ${key.slice(0, 80)}`);
  return { kind: 'storage', dtype, key, numel };
}

const ints = (value: Value, what: string): number[] => {
  if (!Array.isArray(value) || !value.every((v): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0))
    throw new PickleRefusedError(`a tensor's ${what} is not a tuple of integers`);
  return value;
};

/** The whitelisted callables, applied as data. */
function reduce(callable: Value, args: Value): Value {
  if (!isKind(callable, 'global') || !Array.isArray(args)) throw new PickleRefusedError('REDUCE of something that is not a global');
  switch (callable.name) {
    case 'collections.OrderedDict':
      return new Map();
    case 'torch._utils._rebuild_parameter':
      return args[0];
    case 'torch._utils._rebuild_tensor_v2': {
      const [storage, offset, size, stride] = args;
      if (!isKind(storage, 'storage') || typeof offset !== 'number') throw new PickleRefusedError('_rebuild_tensor_v2 without a storage');
      return { kind: 'tensor', storage, offset, size: ints(size, 'size'), stride: ints(stride, 'stride') };
    }
    default:
      throw new PickleRefusedError(`refused: calling ${callable.name}`);
  }
}

/** A pickled state_dict's tensors by name, in file order; anything but a dict of tensors is refused. */
export function unpickleStateDict(bytes: Uint8Array): Map<string, TensorView> {
  const value = unpickle(bytes);
  if (!(value instanceof Map)) throw new PickleRefusedError('the pickle holds no dict of tensors');
  const tensors = new Map<string, TensorView>();
  for (const [name, tensor] of value) {
    if (typeof name !== 'string' || !isKind(tensor, 'tensor')) throw new PickleRefusedError(`an entry that is not a named tensor`);
    tensors.set(name, tensor);
  }
  return tensors;
}
