import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { pipeline as pipelineStreams, Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { crc32, createGunzip } from 'node:zlib';
import * as tar from 'tar';
import yauzl from 'yauzl';
import { InvalidInputError, isDiskFull } from '../../common/errors.js';

export interface ArchiveLimits {
  maxFiles: number;
  maxUnpackedBytes: number;
}

/** An archive refused as a whole; nothing of it is extracted. */
export class ArchiveError extends InvalidInputError {
  constructor(message: string) {
    super([{ path: 'archive', message }], 'body', message);
  }
}

/**
 * How deep and long an entry's path may be. A dataset is `[wrapper/]class/image` (macOS adds a
 * `__MACOSX/` mirror): 8 segments leave room to spare, and bound the folders one entry can imply.
 */
export const PATH_BOUNDS = { segments: 8, segmentBytes: 255, pathBytes: 1024 };

/**
 * The entry's path as '/'-separated segments, refused when it is absolute, climbs out with `..`,
 * holds a NUL, or passes PATH_BOUNDS: safe to join under a folder.
 */
function safeEntryPath(name: string): string {
  const shown = name.length > 120 ? `${name.slice(0, 120)}...` : name;
  const normalised = name.replace(/\\/g, '/').replace(/^(\.\/)+/, '');
  if (!normalised || normalised.includes('\0')) throw new ArchiveError(`entry "${shown}" has an empty or NUL-containing name`);
  if (normalised.startsWith('/') || /^[a-zA-Z]:/.test(normalised)) throw new ArchiveError(`entry "${shown}" has an absolute path`);
  const segments = normalised.split('/').filter((segment) => segment !== '' && segment !== '.');
  if (segments.includes('..')) throw new ArchiveError(`entry "${shown}" climbs out of the archive with ".."`);
  if (segments.length > PATH_BOUNDS.segments)
    throw new ArchiveError(`entry "${shown}" is ${segments.length} folders deep; at most ${PATH_BOUNDS.segments} are accepted`);
  if (Buffer.byteLength(normalised) > PATH_BOUNDS.pathBytes || segments.some((s) => Buffer.byteLength(s) > PATH_BOUNDS.segmentBytes))
    throw new ArchiveError(
      `entry "${shown}" has a path longer than ${PATH_BOUNDS.pathBytes} bytes or a name longer than ${PATH_BOUNDS.segmentBytes}`,
    );
  return segments.join('/');
}

/** Image datasets barely compress (JPEG, PNG): an archive that expands more than this is a bomb. */
export const MAX_EXPANSION_RATIO = 100;

/**
 * Files and folders (each an inode) count against maxFiles, the folders a path implies as well as
 * those the archive lists, each once; bytes count against the size and ratio bounds.
 */
class ExtractionBudget {
  files = 0;
  bytes = 0;
  private readonly folders = new Set<string>();
  private readonly maxBytes: number;
  constructor(
    private readonly limits: ArchiveLimits,
    archiveBytes: number,
  ) {
    this.maxBytes = Math.min(limits.maxUnpackedBytes, Math.max(archiveBytes, 1024 * 1024) * MAX_EXPANSION_RATIO);
  }
  /** An entry of the archive: its path checked (safeEntryPath), its folders and size counted. */
  add(name: string, kind: 'file' | 'folder', size = 0): string {
    const entry = safeEntryPath(name);
    const segments = entry.split('/');
    for (let depth = 1; depth <= (kind === 'folder' ? segments.length : segments.length - 1); depth++) {
      const folder = segments.slice(0, depth).join('/');
      if (this.folders.has(folder)) continue;
      this.folders.add(folder);
      this.checkCount();
    }
    if (kind === 'folder') return entry;
    this.files += 1;
    this.bytes += size;
    this.checkCount();
    if (this.bytes > this.maxBytes) {
      const ratio = this.maxBytes < this.limits.maxUnpackedBytes ? ` (${MAX_EXPANSION_RATIO}x the archive)` : '';
      throw new ArchiveError(`unpacks to more than ${this.maxBytes} bytes${ratio} (at "${entry}")`);
    }
    return entry;
  }
  private checkCount() {
    if (this.files + this.folders.size > this.limits.maxFiles)
      throw new ArchiveError(`more than ${this.limits.maxFiles} files and folders`);
  }
  get plan(): ArchivePlan {
    return { files: this.files, folders: this.folders.size, bytes: this.bytes };
  }
  /** Decompressed tar stream bytes: the entries' declared sizes plus headers and padding. */
  get maxStreamBytes() {
    return this.maxBytes + (this.limits.maxFiles + 2) * 1536;
  }
}

/**
 * Gunzips on libuv's thread pool (node-tar's own gunzip runs on the event loop) and stops a stream
 * that inflates past what its entries may hold.
 */
function gunzipped(file: string, maxBytes: number): Readable {
  let inflated = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      inflated += chunk.length;
      callback(inflated > maxBytes ? new ArchiveError(`inflates past ${maxBytes} bytes`) : null, chunk);
    },
  });
  // An error anywhere destroys every stream of the chain, `counter` included, so its reader sees it.
  pipelineStreams(createReadStream(file), createGunzip(), counter, () => undefined);
  return counter;
}

/** What the listing pass found, before anything is written: extraction writes no more. */
export interface ArchivePlan {
  files: number;
  folders: number;
  bytes: number;
}

/** Called between the listing pass and extraction: throws to refuse the plan (a quota, say). */
export type ApprovePlan = (plan: ArchivePlan) => Promise<void>;

/** A fault of the archive's own, as a refusal; a full disk stays what it is. */
const refusal = (error: unknown, what: string) =>
  error instanceof ArchiveError || isDiskFull(error) ? error : new ArchiveError(`not a readable ${what}: ${(error as Error).message}`);

const TAR_TYPES = new Set(['File', 'OldFile', 'Directory']);

/**
 * tar.gz: every entry is checked (regular files and folders only, safe paths, size and count
 * bounds) before a byte is written; then extracted with the same checks enforced again.
 */
async function extractTar(file: string, destination: string, limits: ArchiveLimits, approve: ApprovePlan): Promise<ArchivePlan> {
  const budget = new ExtractionBudget(limits, (await stat(file)).size);
  let problem: ArchiveError | undefined;
  const lister = tar.t({
    strict: true,
    onReadEntry: (entry) => {
      if (problem) return;
      try {
        if (!TAR_TYPES.has(entry.type))
          throw new ArchiveError(`entry "${entry.path}" is a ${entry.type}; only regular files and folders are accepted`);
        budget.add(entry.path, entry.type === 'Directory' ? 'folder' : 'file', entry.size ?? 0);
      } catch (error) {
        problem = error as ArchiveError;
        lister.abort(problem); // stop reading: nothing after a refused entry matters
      }
    },
  });
  await pipeline(gunzipped(file, budget.maxStreamBytes), lister).catch((error: Error) => {
    throw problem ?? refusal(error, 'tar.gz');
  });
  if (problem) throw problem;
  const plan = budget.plan;
  await approve(plan);
  const extractor = tar.x({
    cwd: destination,
    strict: true,
    preservePaths: false,
    preserveOwner: false,
    noMtime: true,
    maxDepth: PATH_BOUNDS.segments,
    filter: (_path, entry) => 'type' in entry && TAR_TYPES.has(entry.type),
  });
  await pipeline(gunzipped(file, budget.maxStreamBytes), extractor).catch((error: Error) => {
    throw refusal(error, 'tar.gz');
  });
  return plan;
}

function openZip(file: string): Promise<yauzl.ZipFile> {
  return new Promise((resolve, reject) => {
    yauzl.open(file, { lazyEntries: true, autoClose: false, validateEntrySizes: true, strictFileNames: true }, (error, zip) =>
      error || !zip ? reject(new ArchiveError(`not a readable zip: ${error?.message ?? 'no entries'}`)) : resolve(zip),
    );
  });
}

/** Every entry of the central directory, each checked (no links, safe paths, size and count bounds), with its path. */
function checkedZipEntries(zip: yauzl.ZipFile, budget: ExtractionBudget): Promise<Array<{ entry: yauzl.Entry; target: string }>> {
  return new Promise((resolve, reject) => {
    const entries: Array<{ entry: yauzl.Entry; target: string }> = [];
    zip.on('error', reject);
    zip.on('end', () => resolve(entries));
    zip.on('entry', (entry: yauzl.Entry) => {
      try {
        const unixMode = (entry.externalFileAttributes >>> 16) & 0o170000;
        if (unixMode === 0o120000)
          throw new ArchiveError(`entry "${entry.fileName}" is a symbolic link; only regular files and folders are accepted`);
        const folder = entry.fileName.endsWith('/');
        entries.push({ entry, target: budget.add(entry.fileName, folder ? 'folder' : 'file', entry.uncompressedSize) });
        zip.readEntry();
      } catch (error) {
        reject(error instanceof Error ? error : new Error(String(error)));
      }
    });
    zip.readEntry();
  });
}

function entryStream(zip: yauzl.ZipFile, entry: yauzl.Entry): Promise<Readable> {
  return new Promise((resolve, reject) =>
    zip.openReadStream(entry, (error, stream) =>
      error || !stream ? reject(error ?? new Error(`cannot read ${entry.fileName}`)) : resolve(stream),
    ),
  );
}

/** zip: sizes come from the central directory and are checked again while inflating (bombs lie). */
async function extractZip(file: string, destination: string, limits: ArchiveLimits, approve: ApprovePlan): Promise<ArchivePlan> {
  const zip = await openZip(file);
  try {
    const budget = new ExtractionBudget(limits, (await stat(file)).size);
    const entries = await checkedZipEntries(zip, budget);
    const plan = budget.plan;
    await approve(plan);
    let written = 0;
    for (const { entry, target: relative } of entries) {
      const target = path.join(destination, relative);
      if (entry.fileName.endsWith('/')) {
        await mkdir(target, { recursive: true });
        continue;
      }
      await mkdir(path.dirname(target), { recursive: true });
      const stream = await entryStream(zip, entry);
      let crc = 0;
      stream.on('data', (chunk: Buffer) => {
        written += chunk.length;
        crc = crc32(chunk, crc);
        if (written > plan.bytes) stream.destroy(new ArchiveError('unpacks to more than its declared size'));
      });
      await pipeline(stream, createWriteStream(target, { flags: 'wx' }));
      if (crc !== entry.crc32) throw new ArchiveError(`entry "${entry.fileName}" fails its CRC-32 check (damaged archive)`);
    }
    return plan;
  } catch (error) {
    throw refusal(error, 'zip');
  } finally {
    zip.close();
  }
}

/**
 * Lists the archive and checks every entry, lets `approve` see the plan (what extraction will
 * write, at most), then extracts. Run it off the API's main thread (unpack.ts): archives are input.
 */
export async function extractArchive(
  file: string,
  format: 'tar.gz' | 'zip',
  destination: string,
  limits: ArchiveLimits,
  approve: ApprovePlan = async () => undefined,
): Promise<ArchivePlan> {
  await mkdir(destination, { recursive: true });
  return format === 'zip' ? extractZip(file, destination, limits, approve) : extractTar(file, destination, limits, approve);
}
