import type { Readable } from 'node:stream';
import { writeArchive } from '../../common/model-archive.js';
import { downloadName, type CheckpointSelector, type JobArtifacts, type ModelFolder, type StoredFile } from '../../common/job-artifacts.js';
import { ConflictError, InvalidInputError } from '../../common/errors.js';
import type { CheckpointFormat, DownloadPrecision, ExportRequest } from '../../schemas/artifacts.js';
import type { Caller } from '../../schemas/auth.js';
import type { ArchiveCache } from './archive-cache.js';

export interface Download {
  size: number;
  etag: string;
  filename: string;
  contentType: string;
  open(): Promise<Readable>;
}

export type { CheckpointSelector } from '../../common/job-artifacts.js';

/** Converts saved models (it loads them: heavy work, kept off the caller's thread). */
export interface ModelExporter {
  /**
   * Starts converting (if no conversion of that key runs) and returns at once: the download is
   * served once it is in the store. Refuses at once when the caller has its share of the queue.
   */
  begin(request: ExportRequest, caller: Caller): void;
}

/** A download not made yet: the client asks again after this many seconds. */
export interface Converting {
  converting: true;
  retryAfterSeconds: number;
}

/** An ONNX export of a 224 px model takes tens of seconds on 2 cores; a few seconds between asks is enough. */
const CONVERTING_RETRY_AFTER_SECONDS = 5;

const CONTENT_TYPES: Record<CheckpointFormat, string> = {
  'tar.gz': 'application/gzip',
  safetensors: 'application/octet-stream',
  onnx: 'application/octet-stream',
};

/**
 * A download derived from a model folder, built on first request and kept in the store (repeated
 * downloads are plain reads), its use recorded with the archive cache that bounds them all; a format
 * the export thread makes is started, and the caller told to come back.
 */
async function cachedDownload(
  artifacts: JobArtifacts,
  model: ModelFolder,
  { format, precision }: DownloadKind,
  { archives, exporter, caller }: { archives: ArchiveCache; exporter: ModelExporter; caller: Caller },
): Promise<StoredFile | Converting> {
  const file = artifacts.download(model.label, format, precision);
  let stat = await file.stat();
  // A model that keeps only what trains archives whole only once loaded: the export thread writes that tar.gz too.
  if (!stat && (format !== 'tar.gz' || (await artifacts.modelFrozenSource(model.folder)))) {
    exporter.begin({ jobId: artifacts.jobId, model, format, precision, key: file.key }, caller);
    return { converting: true, retryAfterSeconds: CONVERTING_RETRY_AFTER_SECONDS };
  }
  if (!stat) {
    await writeArchive(artifacts, model.folder, file);
    stat = await file.stat();
    if (!stat) throw new Error(`download ${file.key} vanished after it was written`);
  }
  await archives.used(file.key, stat.size);
  return file;
}

/** A download's format, and whether its weights are as trained or the int8 backbone (ONNX only). */
export interface DownloadKind {
  format: CheckpointFormat;
  precision: DownloadPrecision;
}

export async function checkpointDownload(
  artifacts: JobArtifacts,
  selector: CheckpointSelector,
  kind: DownloadKind,
  derivation: { archives: ArchiveCache; exporter: ModelExporter; caller: Caller },
): Promise<Download | Converting> {
  const { format, precision } = kind;
  if (precision === 'int8' && format !== 'onnx')
    throw InvalidInputError.field('precision', 'int8 is exported as ONNX only (format=onnx)', 'query');
  const model = await artifacts.savedModel(selector);
  if (precision === 'int8') {
    const int8 = await artifacts.int8Of(model.folder);
    if ('reason' in int8) throw new ConflictError(`precision int8 is not offered for this model: ${int8.reason}`, { field: 'precision' });
  }
  // The safetensors the worker wrote beside the final model is served as it is; everything else is derived and cached.
  const written = artifacts.torchvisionWeights(model.folder);
  const file = format === 'safetensors' && (await written.stat()) ? written : await cachedDownload(artifacts, model, kind, derivation);
  if ('converting' in file) return file;
  const stat = await file.stat();
  if (!stat) throw new Error(`download ${file.key} vanished`);
  return {
    size: stat.size,
    etag: await file.sha256(),
    filename: `${artifacts.jobId}-${downloadName(model.label, format, precision)}`,
    contentType: CONTENT_TYPES[format],
    open: () => file.open(),
  };
}
