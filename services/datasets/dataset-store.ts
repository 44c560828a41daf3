import { randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { readJson, type ArtifactStore } from '../../common/artifact-store.js';
import { removeEntriesOlderThan } from '../../common/cache-eviction.js';
import { ConflictError, NotFoundError, SlowSenderError, TooLargeError } from '../../common/errors.js';
import type { RedisClient } from '../../common/redis-connection.js';
import { publishUpload, unpublishUpload, UPLOAD_RECORDS, uploadRecordKey } from '../../common/shared-uploads.js';
import type { Caller } from '../../schemas/auth.js';
import { DatasetError, readImageFolder } from '../../common/image-folder.js';
import { DatasetRecord, UPLOADS_FOLDER, type PreflightReport } from '../../schemas/dataset.js';
import { ArchiveError, type ArchiveLimits } from './archive.js';
import { DatasetQuota } from './dataset-quota.js';
import { Unpacker } from './unpack.js';
import { isUuid } from '../../schemas/ids.js';

function parsedOrNull(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

/** Each owner's uploads, one empty marker per upload, so listing one owner's reads only theirs. */
const ownerIndex = (owner: string) => `${UPLOAD_RECORDS}/owners/${owner}`;
const ownerMarkerKey = (owner: string, id: string) => `${ownerIndex(owner)}/${id}`;
/** Written once every record of an earlier release has its marker. */
const OWNER_INDEX_COMPLETE = `${UPLOAD_RECORDS}/owners/.complete`;

/** An upload's record if it exists and the caller may see it: another owner's upload does not exist for them. */
export async function readUploadRecord(store: ArtifactStore, caller: Caller, id: string): Promise<DatasetRecord | null> {
  if (!isUuid(id)) return null;
  const record = await readJson(store, uploadRecordKey(id), DatasetRecord);
  return record && (caller.admin || record.owner === caller.owner) ? record : null;
}

/** What an upload may be: the archive's size and arrival rate, and what it may unpack to (ArchiveLimits). */
export interface UploadLimits extends ArchiveLimits {
  maxArchiveBytes: number;
  /** Per owner, unpacked, over all their uploads. */
  quotaBytes: number;
  /** An upload that sends less than this per second, over any `rateWindowMs`, is cut off. */
  minBytesPerSecond: number;
  rateWindowMs: number;
}

/** Counts an archive's bytes as they arrive: past the size limit, or below the rate floor over a window, the upload is cut off. */
function arrivalCheck(limits: UploadLimits): Transform & { received: number } {
  let inWindow = 0;
  const floor = (limits.minBytesPerSecond * limits.rateWindowMs) / 1000;
  const counter = Object.assign(
    new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        counter.received += chunk.length;
        inWindow += chunk.length;
        const over = counter.received > limits.maxArchiveBytes;
        callback(over ? new TooLargeError(`the archive is larger than ${limits.maxArchiveBytes} bytes`) : null, chunk);
      },
      flush(callback) {
        clearInterval(timer);
        callback();
      },
    }),
    { received: 0 },
  );
  const timer = setInterval(() => {
    if (inWindow < floor)
      counter.destroy(
        new SlowSenderError(
          `the upload sent ${inWindow} bytes in ${limits.rateWindowMs / 1000} s, below the ${limits.minBytesPerSecond} bytes per second every upload must keep up (UPLOAD_MIN_BYTES_PER_SECOND)`,
        ),
      );
    inWindow = 0;
  }, limits.rateWindowMs);
  counter.on('close', () => clearInterval(timer));
  return counter;
}

/**
 * Uploaded datasets: DATA_DIR/uploads/<id>/ holds the class folders, the artifact store the record
 * (uploads/<id>.json, seen by every API process). An upload is received and unpacked in `.incoming/`
 * (on a thread of its own) and moved into place only when complete and valid; a refused or broken-off
 * upload's files are removed before it is answered.
 */
export class DatasetStore {
  private readonly root: string;
  private readonly incoming: string;
  /** Deleted uploads' folders wait here while they are removed in the background. */
  private readonly trash: string;
  private readonly removing = new Set<Promise<void>>();
  readonly quota: DatasetQuota;

  constructor(
    dataDir: string,
    private readonly store: ArtifactStore,
    ledger: { redis: RedisClient; prefix: string },
    readonly limits: UploadLimits,
    /** The jobs that may still train on an upload: it is not deleted under them. */
    private readonly openJobsOn: (datasetId: string) => Promise<string[]> = async () => [],
    private readonly unpacker = new Unpacker(),
  ) {
    this.root = path.join(dataDir, UPLOADS_FOLDER);
    this.incoming = path.join(this.root, '.incoming');
    this.trash = path.join(this.root, '.trash');
    this.quota = new DatasetQuota(ledger.redis, ledger.prefix, limits.quotaBytes, (owner) => this.list({ owner, admin: false }));
  }

  async create(
    caller: Caller,
    body: Readable,
    format: 'tar.gz' | 'zip',
    name: string,
    preflight: (id: string) => Promise<PreflightReport>,
  ): Promise<DatasetRecord> {
    await this.quota.requireRoom(caller);
    const id = randomUUID();
    const archive = path.join(this.incoming, `${id}.${format}`);
    const unpacked = path.join(this.incoming, id);
    await mkdir(this.incoming, { recursive: true });
    try {
      const arrival = arrivalCheck(this.limits);
      await pipeline(body, arrival, createWriteStream(archive));
      const { files, bytes } = await this.unpacker.unpack({ file: archive, format, destination: unpacked, limits: this.limits }, (plan) =>
        this.quota.reserve(caller, id, plan.bytes, `this archive unpacks to ${plan.bytes} bytes, which`),
      );
      const classRoot = await this.classFolderRoot(unpacked);
      const folder = await readImageFolder(classRoot).catch((error: Error) => {
        throw new ArchiveError(error instanceof DatasetError ? error.message.replace(classRoot, 'the archive') : error.message);
      });
      await rename(classRoot, path.join(this.root, id));
      if (this.store.shared) await publishUpload(this.store, id, path.join(this.root, id));
      const record: DatasetRecord = {
        id,
        owner: caller.owner,
        name,
        createdAt: new Date().toISOString(),
        archiveBytes: arrival.received,
        files,
        unpackedBytes: bytes,
        classNames: folder.classNames,
        images: folder.images.length,
        preflight: await preflight(id),
      };
      await this.commit(record);
      await this.quota.commit(caller.owner, id, bytes);
      return record;
    } catch (error) {
      await this.store.remove(ownerMarkerKey(caller.owner, id));
      await this.removeFiles(id);
      await this.quota.release(caller.owner, id);
      throw error;
    } finally {
      await rm(archive, { force: true });
      await rm(unpacked, { recursive: true, force: true });
    }
  }

  /** Its owner's marker first: a record is never missing from its owner's listing. */
  private async commit(record: DatasetRecord): Promise<void> {
    await this.store.write(ownerMarkerKey(record.owner, record.id), '');
    await this.store.write(uploadRecordKey(record.id), JSON.stringify(record));
  }

  /**
   * Removes what a crashed process left in `.incoming/`. Only entries older than any upload can take
   * (another API process may be receiving one now).
   */
  async sweepIncoming(olderThanMs: number): Promise<string[]> {
    await rm(this.trash, { recursive: true, force: true });
    return removeEntriesOlderThan(this.incoming, olderThanMs);
  }

  /** Archives often wrap the class folders in one top folder (`flowers/daisy/...`): unwrap it. */
  private async classFolderRoot(dir: string): Promise<string> {
    const entries = (await readdir(dir, { withFileTypes: true })).filter((e) => !e.name.startsWith('.') && e.name !== '__MACOSX');
    if (entries.length === 1 && entries[0].isDirectory()) {
      const inner = path.join(dir, entries[0].name);
      const innerEntries = await readdir(inner, { withFileTypes: true });
      if (innerEntries.some((e) => e.isDirectory())) return inner;
    }
    return dir;
  }

  async get(caller: Caller, id: string): Promise<DatasetRecord | null> {
    return readUploadRecord(this.store, caller, id);
  }

  async require(caller: Caller, id: string): Promise<DatasetRecord> {
    const record = await this.get(caller, id);
    if (!record) throw new NotFoundError(`no dataset with id ${id}`);
    return record;
  }

  /** The caller's uploads (everyone's for the admin), newest first: an owner's listing reads only their own records. */
  async list(caller: Caller): Promise<DatasetRecord[]> {
    const ids = caller.admin
      ? (await this.store.list(UPLOAD_RECORDS)).filter((n) => n.endsWith('.json')).map((n) => n.slice(0, -5))
      : await this.store.list(ownerIndex(caller.owner));
    const records = await Promise.all(ids.map((id) => this.get(caller, id)));
    return records.filter((r): r is DatasetRecord => r !== null).sort((a, b) => b.createdAt.localeCompare(a.createdAt));
  }

  /** Deletes one of the caller's uploads, unless a queued or running job uses it (409, naming them). */
  async delete(caller: Caller, id: string): Promise<void> {
    const record = await this.require(caller, id);
    const users = await this.openJobsOn(record.id);
    if (users.length)
      throw new ConflictError(`dataset ${record.id} is in use by ${users.length} queued or running job(s)`, { jobs: users });
    await this.remove(record);
  }

  /**
   * An upload the caller was allowed to see (from `require`): gone for every reader once this returns;
   * its files (hundreds of thousands, maybe) are removed in the background.
   */
  async remove({ id, owner }: DatasetRecord): Promise<void> {
    await this.store.remove(uploadRecordKey(id));
    await this.store.remove(ownerMarkerKey(owner, id));
    await this.quota.release(owner, id);
    if (this.store.shared) await unpublishUpload(this.store, id);
    const doomed = path.join(this.trash, `${id}-${randomUUID()}`);
    await mkdir(this.trash, { recursive: true });
    const moved = await rename(path.join(this.root, id), doomed).then(
      () => true,
      () => false,
    );
    if (!moved) return;
    const removal = rm(doomed, { recursive: true, force: true }).finally(() => this.removing.delete(removal));
    this.removing.add(removal);
  }

  /** Stops unpacking and lets background removals finish. */
  async close(): Promise<void> {
    await this.unpacker.close();
    await Promise.all(this.removing);
  }

  /** Gives the records of a release before the owner index their markers, once (reads every record that one time). */
  async indexOwners(): Promise<string[]> {
    if (await this.store.stat(OWNER_INDEX_COMPLETE)) return [];
    const indexed: string[] = [];
    for (const name of await this.store.list(UPLOAD_RECORDS)) {
      // A record that does not parse stays out of every listing, as before; it must not stop the API from starting.
      const record = name.endsWith('.json')
        ? await readJson(this.store, uploadRecordKey(name.slice(0, -5)), DatasetRecord).catch(() => null)
        : null;
      if (!record || (await this.store.stat(ownerMarkerKey(record.owner, record.id)))) continue;
      await this.store.write(ownerMarkerKey(record.owner, record.id), '');
      indexed.push(record.id);
    }
    await this.store.write(OWNER_INDEX_COMPLETE, '');
    return indexed;
  }

  /** Records of an earlier release lay beside the folders in DATA_DIR/uploads: moved into the store, once. */
  async migrateRecords(): Promise<string[]> {
    const moved: string[] = [];
    for (const name of await readdir(this.root).catch(() => [] as string[])) {
      const id = name.replace(/\.json$/, '');
      if (name === id || !isUuid(id)) continue;
      const file = path.join(this.root, name);
      const record = DatasetRecord.safeParse(parsedOrNull(await readFile(file, 'utf8')));
      if (!record.success) continue;
      await this.store.write(uploadRecordKey(id), JSON.stringify(record.data));
      await rm(file, { force: true });
      moved.push(id);
    }
    return moved;
  }

  private async removeFiles(id: string): Promise<void> {
    await rm(path.join(this.root, id), { recursive: true, force: true });
    if (this.store.shared) await unpublishUpload(this.store, id);
  }
}
