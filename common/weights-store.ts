import { createHash } from 'node:crypto';
import { readJson, type ArtifactStore } from './artifact-store.js';
import { WeightsRecord } from '../schemas/weights.js';

const FOLDER = 'weights';

/**
 * Weights kept in the artifact store, one copy for every worker and API host:
 *
 *     weights/<name>.safetensors   torchvision-named tensors
 *     weights/<name>.json          where they came from and their hashes, written last: it marks them complete
 *
 * The only code that knows this layout.
 */
export class WeightsStore {
  constructor(private readonly store: ArtifactStore) {}

  private tensorsKey(name: string) {
    return `${FOLDER}/${name}.safetensors`;
  }
  private recordKey(name: string) {
    return `${FOLDER}/${name}.json`;
  }

  /** A variant's record once it is complete; null before. */
  record(name: string): Promise<WeightsRecord | null> {
    return readJson(this.store, this.recordKey(name), WeightsRecord);
  }

  async records(): Promise<WeightsRecord[]> {
    const names = (await this.store.list(FOLDER)).filter((file) => file.endsWith('.json')).map((file) => file.slice(0, -5));
    const records = await Promise.all(names.map((name) => this.record(name).catch(() => null)));
    return records.filter((record): record is WeightsRecord => record !== null);
  }

  /** The safetensors of a complete variant. */
  read(name: string): Promise<Buffer> {
    return this.store.read(this.tensorsKey(name));
  }

  /** Writes a variant's safetensors, then its record (with the safetensors' sha256 and size): readers never see half. */
  async publish(chunks: Uint8Array[], record: Omit<WeightsRecord, 'sha256' | 'bytes' | 'storedAt'>): Promise<WeightsRecord> {
    const hash = createHash('sha256');
    let bytes = 0;
    for (const chunk of chunks) {
      hash.update(chunk);
      bytes += chunk.byteLength;
    }
    await this.store.remove(this.recordKey(record.name));
    await this.store.write(this.tensorsKey(record.name), chunks);
    const complete: WeightsRecord = { ...record, sha256: hash.digest('hex'), bytes, storedAt: new Date().toISOString() };
    await this.store.write(this.recordKey(record.name), JSON.stringify(complete));
    return complete;
  }
}
