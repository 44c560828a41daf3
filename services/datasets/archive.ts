import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { pipeline as pipelineStreams, Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { crc32, createGunzip } from 'node:zlib';
import * as tar from 'tar';
import yauzl from 'yauzl';
import { InvalidInputError } from '../../common/errors.js';

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

/** A relative path with no `..`, no absolute root, no drive letter, no NUL: safe to join under a folder. */
export function safeEntryPath(name: string): string {
  const normalised = name.replace(/\\/g, '/').replace(/^(\.\/)+/, '');
  if (!normalised || normalised.includes('\0')) throw new ArchiveError(`entry "${name}" has an empty or NUL-containing name`);
  if (normalised.startsWith('/') || /^[a-zA-Z]:/.test(normalised)) throw new ArchiveError(`entry "${name}" has an absolute path`);
  if (normalised.split('/').includes('..')) throw new ArchiveError(`entry "${name}" climbs out of the archive with ".."`);
  return normalised.replace(/\/+$/, '');
}

/** Image datasets barely compress (JPEG, PNG): an archive that expands more than this is a bomb. */
export const MAX_EXPANSION_RATIO = 100;

/** Files and folders (each an inode) count against maxFiles; bytes against the size and ratio bounds. */
class ExtractionBudget {
  files = 0;
  folders = 0;
  bytes = 0;
  private readonly maxBytes: number;
  constructor(
    private readonly limits: ArchiveLimits,
    archiveBytes: number,
  ) {
    this.maxBytes = Math.min(limits.maxUnpackedBytes, Math.max(archiveBytes, 1024 * 1024) * MAX_EXPANSION_RATIO);
  }
  add(size: number, name: string) {
    this.files += 1;
    this.bytes += size;
    this.checkCount();
    if (this.bytes > this.maxBytes) {
      const ratio = this.maxBytes < this.limits.maxUnpackedBytes ? ` (${MAX_EXPANSION_RATIO}x the archive)` : '';
      throw new ArchiveError(`unpacks to more than ${this.maxBytes} bytes${ratio} (at "${name}")`);
    }
  }
  addFolder() {
    this.folders += 1;
    this.checkCount();
  }
  private checkCount() {
    if (this.files + this.folders > this.limits.maxFiles) throw new ArchiveError(`more than ${this.limits.maxFiles} files and folders`);
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

/**
 * tar.gz: every entry is checked (regular files and folders only, safe paths, size and count
 * bounds) before a byte is written; then extracted with the same checks enforced again.
 */
async function extractTar(file: string, destination: string, limits: ArchiveLimits): Promise<{ files: number; bytes: number }> {
  const budget = new ExtractionBudget(limits, (await stat(file)).size);
  let problem: ArchiveError | undefined;
  const unreadable = (error: Error) =>
    error instanceof ArchiveError ? error : new ArchiveError(`not a readable tar.gz: ${error.message}`);
  const lister = tar.t({
    strict: true,
    onReadEntry: (entry) => {
      if (problem) return;
      try {
        if (entry.type !== 'File' && entry.type !== 'OldFile' && entry.type !== 'Directory') {
          throw new ArchiveError(`entry "${entry.path}" is a ${entry.type}; only regular files and folders are accepted`);
        }
        safeEntryPath(entry.path);
        if (entry.type === 'Directory') budget.addFolder();
        else budget.add(entry.size ?? 0, entry.path);
      } catch (error) {
        problem = error as ArchiveError;
        lister.abort(problem); // stop reading: nothing after a refused entry matters
      }
    },
  });
  await pipeline(gunzipped(file, budget.maxStreamBytes), lister).catch((error: Error) => {
    throw problem ?? unreadable(error);
  });
  if (problem) throw problem;
  const extractor = tar.x({ cwd: destination, strict: true, preservePaths: false, preserveOwner: false, noMtime: true });
  await pipeline(gunzipped(file, budget.maxStreamBytes), extractor).catch((error: Error) => {
    throw unreadable(error);
  });
  return { files: budget.files, bytes: budget.bytes };
}

function openZip(file: string): Promise<yauzl.ZipFile> {
  return new Promise((resolve, reject) => {
    yauzl.open(file, { lazyEntries: true, autoClose: false, validateEntrySizes: true, strictFileNames: true }, (error, zip) =>
      error || !zip ? reject(new ArchiveError(`not a readable zip: ${error?.message ?? 'no entries'}`)) : resolve(zip),
    );
  });
}

/** Every entry of the central directory, each checked (no links, safe paths, size and count bounds). */
function checkedZipEntries(zip: yauzl.ZipFile, budget: ExtractionBudget): Promise<yauzl.Entry[]> {
  return new Promise((resolve, reject) => {
    const entries: yauzl.Entry[] = [];
    zip.on('error', reject);
    zip.on('end', () => resolve(entries));
    zip.on('entry', (entry: yauzl.Entry) => {
      try {
        const unixMode = (entry.externalFileAttributes >>> 16) & 0o170000;
        if (unixMode === 0o120000)
          throw new ArchiveError(`entry "${entry.fileName}" is a symbolic link; only regular files and folders are accepted`);
        safeEntryPath(entry.fileName);
        if (entry.fileName.endsWith('/')) budget.addFolder();
        else budget.add(entry.uncompressedSize, entry.fileName);
        entries.push(entry);
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
async function extractZip(file: string, destination: string, limits: ArchiveLimits): Promise<{ files: number; bytes: number }> {
  const zip = await openZip(file);
  try {
    const budget = new ExtractionBudget(limits, (await stat(file)).size);
    let written = 0;
    for (const entry of await checkedZipEntries(zip, budget)) {
      const target = path.join(destination, safeEntryPath(entry.fileName));
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
        if (written > limits.maxUnpackedBytes) stream.destroy(new ArchiveError('unpacks to more than its declared size'));
      });
      await pipeline(stream, createWriteStream(target, { flags: 'wx' }));
      if (crc !== entry.crc32) throw new ArchiveError(`entry "${entry.fileName}" fails its CRC-32 check (damaged archive)`);
    }
    return { files: budget.files, bytes: written };
  } catch (error) {
    throw error instanceof ArchiveError ? error : new ArchiveError((error as Error).message);
  } finally {
    zip.close();
  }
}

export async function extractArchive(file: string, format: 'tar.gz' | 'zip', destination: string, limits: ArchiveLimits) {
  await mkdir(destination, { recursive: true });
  return format === 'zip' ? extractZip(file, destination, limits) : extractTar(file, destination, limits);
}
