import yauzl from 'yauzl';
import type { RawTensor } from './safetensors.js';
import { PickleRefusedError, unpickleStateDict, type TensorView } from './torch-pickle.js';

const ELEMENT_BYTES = { F32: 4, F16: 2, BF16: 2, F64: 8, I64: 8, I32: 4 } as const;
/** A state_dict's pickle is a few hundred KB; an archive's entry names are the storages' keys. */
const MAX_PICKLE_BYTES = 64 * 1024 * 1024;

export class TorchCheckpointError extends Error {}

/** Is this the zip container torch.save writes (since PyTorch 1.6), rather than safetensors? */
export const isTorchZip = (bytes: Uint8Array) => bytes[0] === 0x50 && bytes[1] === 0x4b;

function entriesOf(file: Uint8Array): Promise<Map<string, Buffer>> {
  return new Promise((resolve, reject) => {
    yauzl.fromBuffer(
      Buffer.from(file.buffer, file.byteOffset, file.byteLength),
      { lazyEntries: true, validateEntrySizes: true },
      (error, zip) => {
        if (error || !zip) return reject(new TorchCheckpointError(`not a torch.save zip archive: ${error?.message ?? 'no entries'}`));
        const entries = new Map<string, Buffer>();
        zip.on('error', (e: Error) => reject(new TorchCheckpointError(`a damaged torch.save archive: ${e.message}`)));
        zip.on('end', () => resolve(entries));
        zip.on('entry', (entry: yauzl.Entry) => {
          zip.openReadStream(entry, (streamError, stream) => {
            if (streamError || !stream) return reject(new TorchCheckpointError(`cannot read ${entry.fileName}: ${streamError?.message}`));
            const chunks: Buffer[] = [];
            stream.on('data', (chunk: Buffer) => chunks.push(chunk));
            stream.on('error', (e: Error) => reject(new TorchCheckpointError(`cannot read ${entry.fileName}: ${e.message}`)));
            stream.on('end', () => {
              entries.set(entry.fileName, Buffer.concat(chunks));
              zip.readEntry();
            });
          });
        });
        zip.readEntry();
      },
    );
  });
}

/** The tensor's elements, in row-major order, out of its storage (strided views gathered). */
function tensorBytes(tensor: TensorView, storage: Buffer, name: string): Uint8Array {
  const size = ELEMENT_BYTES[tensor.storage.dtype];
  const count = tensor.size.reduce((n, d) => n * d, 1);
  if (storage.byteLength < tensor.storage.numel * size) throw new TorchCheckpointError(`${name}: its storage is shorter than it says`);
  const contiguous = tensor.stride.every((stride, axis) => stride === tensor.size.slice(axis + 1).reduce((n, d) => n * d, 1));
  const last = tensor.offset + tensor.size.reduce((reach, d, axis) => reach + (d > 0 ? (d - 1) * tensor.stride[axis] : 0), 0);
  if (count > 0 && last >= tensor.storage.numel) throw new TorchCheckpointError(`${name}: reaches past its storage`);
  if (contiguous) return new Uint8Array(storage.subarray(tensor.offset * size, (tensor.offset + count) * size));
  const out = new Uint8Array(count * size);
  const index = new Array<number>(tensor.size.length).fill(0);
  for (let i = 0; i < count; i++) {
    const element = tensor.offset + index.reduce((sum, at, axis) => sum + at * tensor.stride[axis], 0);
    out.set(storage.subarray(element * size, (element + 1) * size), i * size);
    for (let axis = index.length - 1; axis >= 0; axis--) {
      if (++index[axis] < tensor.size[axis]) break;
      index[axis] = 0;
    }
  }
  return out;
}

/**
 * The tensors of a state_dict that torch.save wrote (the zip format: `<name>/data.pkl`, the pickle, and
 * `<name>/data/<key>`, each storage's raw little-endian bytes), as safetensors-ready tensors. The pickle
 * is read without executing anything (torch-pickle.ts).
 */
export async function readTorchStateDict(file: Uint8Array): Promise<Map<string, RawTensor>> {
  const entries = await entriesOf(file);
  const pickleName = [...entries.keys()].find((name) => /^[^/]+\/data\.pkl$/.test(name));
  if (!pickleName) throw new TorchCheckpointError('not a torch.save archive: no <name>/data.pkl in it');
  const root = pickleName.slice(0, -'data.pkl'.length);
  const byteorder = entries.get(`${root}byteorder`)?.toString('utf8');
  if (byteorder && byteorder !== 'little') throw new TorchCheckpointError(`storages written ${byteorder}-endian are not read here`);
  const pickle = entries.get(pickleName) ?? Buffer.alloc(0);
  if (pickle.byteLength > MAX_PICKLE_BYTES) throw new TorchCheckpointError(`data.pkl is ${pickle.byteLength} bytes: no state_dict's is`);
  const tensors = new Map<string, RawTensor>();
  let views: Map<string, TensorView>;
  try {
    views = unpickleStateDict(pickle);
  } catch (error) {
    if (error instanceof PickleRefusedError) throw new TorchCheckpointError(error.message);
    throw error;
  }
  for (const [name, view] of views) {
    const storage = entries.get(`${root}data/${view.storage.key}`);
    if (!storage) throw new TorchCheckpointError(`${name}: storage ${view.storage.key} is missing from the archive`);
    tensors.set(name, { dtype: view.storage.dtype, shape: view.size, bytes: tensorBytes(view, storage, name) });
  }
  return tensors;
}
