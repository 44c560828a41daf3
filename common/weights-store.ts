import { createHash } from 'node:crypto';
import { readJson, type ArtifactStore } from './artifact-store.js';
import { ConflictError, NotFoundError } from './errors.js';
import { WeightsRecord } from '../schemas/weights.js';

const FOLDER = 'weights';

/**
 * Weights kept in the artifact store, one copy for every worker and API host:
 *
 *     weights/<name>.safetensors   torchvision-named tensors
 *     weights/<name>.json          where they came from and their hashes, written last: it marks them complete
 *     weights/pins/<name>/<job>    a job whose saved models read their frozen tensors from <name>
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
  private pinsPrefix(name: string) {
    return `${FOLDER}/pins/${name}`;
  }

  /** Where a variant's safetensors are, for a saved model that names them as its frozen source. */
  keyOf(name: string): string {
    return this.tensorsKey(name);
  }

  /** The job's saved models read the variant: it cannot be removed or replaced until the job is purged. */
  pin(name: string, jobId: string): Promise<void> {
    return this.store.write(`${this.pinsPrefix(name)}/${jobId}`, new Date().toISOString());
  }
  unpin(name: string, jobId: string): Promise<void> {
    return this.store.remove(`${this.pinsPrefix(name)}/${jobId}`);
  }
  /** The jobs pinning a variant. */
  pinnedBy(name: string): Promise<string[]> {
    return this.store.list(this.pinsPrefix(name));
  }

  private async refuseWhilePinned(name: string, what: string): Promise<void> {
    const jobs = await this.pinnedBy(name);
    if (jobs.length)
      throw new ConflictError(
        `cannot ${what} weights "${name}": the saved models of ${jobs.length} job(s) read their frozen tensors from them (${jobs.slice(0, 5).join(', ')}${jobs.length > 5 ? ', ...' : ''}); purge those jobs first`,
        { jobs },
      );
  }

  /** Removes a variant no job pins (ConflictError naming the jobs that do). */
  async remove(name: string): Promise<void> {
    if (!(await this.record(name))) throw new NotFoundError(`no weights "${name}" in the store`);
    await this.refuseWhilePinned(name, 'remove');
    await this.store.remove(this.recordKey(name));
    await this.store.remove(this.tensorsKey(name));
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
    const sha256 = hash.digest('hex');
    const existing = await this.record(record.name);
    if (existing && existing.sha256 !== sha256) await this.refuseWhilePinned(record.name, 'replace');
    await this.store.remove(this.recordKey(record.name));
    await this.store.write(this.tensorsKey(record.name), chunks);
    const complete: WeightsRecord = { ...record, sha256, bytes, storedAt: new Date().toISOString() };
    await this.store.write(this.recordKey(record.name), JSON.stringify(complete));
    return complete;
  }
}
