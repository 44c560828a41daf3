import {
  CheckpointFormat,
  CheckpointState,
  type DownloadPrecision,
  FrozenSource,
  frozenSourceIn,
  Int8Calibration,
  InterruptedState,
  ModelMetadata,
  TfjsModelJson,
} from '../schemas/artifacts.js';
import { PreflightReport } from '../schemas/dataset.js';
import { Metrics } from '../schemas/metrics.js';
import { ModelSummary } from '../schemas/model.js';
import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { readJson, type ArtifactData, type ArtifactStore, type Recycling } from './artifact-store.js';
import { NotFoundError } from './errors.js';
import { hashStream } from './file-hash.js';

const CHECKPOINT_NAME = /^epoch-(\d{4,})$/;

/** A download's file name: `<label>.<format>`, `<label>.int8.onnx` for the int8 QDQ export. */
export const downloadName = (label: string, format: CheckpointFormat, precision: DownloadPrecision) =>
  `${label}${precision === 'int8' ? '.int8' : ''}.${format}`;
const STATE_FILE = 'state.json';
const METADATA_FILE = 'metadata.json';
const OPTIMIZER_FILE = 'optimizer.bin';
const TORCHVISION_FILE = 'model.safetensors';
const INT8_FILE = 'int8.json';
/** A saved model's files as a tfjs client loads them (model.json and weights.bin are tfjs' layers format): a tar.gz download holds these. */
const MODEL_JSON = 'model.json';
const MODEL_FILES = [MODEL_JSON, 'weights.bin', METADATA_FILE];
const sidecarOf = (key: string) => `${key}.sha256`;

/**
 * One file a job keeps, by its role: its key is JobArtifacts' to make. A download's sha256 (its ETag) is
 * kept beside it, computed once.
 */
export class StoredFile {
  constructor(
    private readonly store: ArtifactStore,
    /** For records that outlive the handle (the download cache's use, an export request). */
    readonly key: string,
  ) {}

  stat() {
    return this.store.stat(this.key);
  }
  open(): Promise<Readable> {
    return this.store.open(this.key);
  }
  read(): Promise<Buffer> {
    return this.store.read(this.key);
  }
  write(data: ArtifactData, options?: Recycling): Promise<void> {
    return this.store.write(this.key, data, options);
  }

  /** Writes the bytes and their sha256 beside them, hashed as they go by. */
  async writeHashed(chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): Promise<void> {
    const hash = createHash('sha256');
    async function* hashing() {
      for await (const chunk of chunks) {
        hash.update(chunk);
        yield chunk;
      }
    }
    await this.store.write(this.key, hashing());
    await this.store.write(sidecarOf(this.key), hash.digest('hex'));
  }

  /** The file's sha256: read from beside it, or computed once and kept there. */
  async sha256(): Promise<string> {
    const sidecar = sidecarOf(this.key);
    if (await this.store.stat(sidecar)) return (await this.store.read(sidecar)).toString('utf8');
    const hex = (await hashStream(await this.store.open(this.key))).digest('hex');
    await this.store.write(sidecar, hex);
    return hex;
  }

  /** The file and its sha256. */
  async remove(options?: Recycling): Promise<void> {
    await this.store.remove(this.key, options);
    await this.store.remove(sidecarOf(this.key));
  }
}

/** Which saved model of a job: its final model, its latest or best epoch, or epoch N. */
export type CheckpointSelector = { kind: 'final' } | { kind: 'latest' } | { kind: 'best' } | { kind: 'epoch'; epoch: number };

/** A saved model: a folder in the store and the label its downloads carry (`final`, `epoch-3`). */
export interface ModelFolder {
  folder: string;
  label: string;
}

/**
 * Everything one job keeps in the artifact store, and the only code that knows its layout:
 *
 *     jobs/<id>/summary.json  metrics.json  preflight.json
 *              /frozen-source.json         where its saved models' frozen tensors are (FrozenSource), when some layers are frozen
 *              /start-weights.safetensors  the frozen layers' start weights, when they are not a stored variant's
 *              /checkpoints/epoch-NNNN/    model.json weights.bin optimizer.bin metadata.json state.json
 *              /checkpoints/interrupted/   the same, mid-epoch, written when a worker is asked to stop
 *              /final/                     model.json weights.bin model.safetensors metadata.json
 *                                          int8.json (activation ranges; written after the rest, only where int8 is offered)
 *              /validation/<n>.jpg         thumbnails of the held-out images in metrics.validationPredictions
 *              /downloads/<label>.<format> tar.gz, onnx, and safetensors of epochs (built on first download)
 *
 * A saved model with frozen layers keeps only the weights of the layers that train; its model.json names
 * the frozen source. An epoch checkpoint is complete once its state.json exists, the final model once its metadata.json
 * does: both are written last. Every JSON file is parsed with its schema when read back.
 */
export class JobArtifacts {
  readonly root: string;

  constructor(
    private readonly store: ArtifactStore,
    readonly jobId: string,
  ) {
    this.root = `jobs/${jobId}`;
  }

  /** Where a saved model's files are, for the code that reads and writes the tfjs layers format (checkpoint-io). */
  modelLocation(folder: string): { store: ArtifactStore; prefix: string } {
    return { store: this.store, prefix: folder };
  }

  private get summaryKey() {
    return `${this.root}/summary.json`;
  }
  private get metricsKey() {
    return `${this.root}/metrics.json`;
  }
  private get preflightKey() {
    return `${this.root}/preflight.json`;
  }
  private get frozenSourceKey() {
    return `${this.root}/frozen-source.json`;
  }
  private get checkpointsPrefix() {
    return `${this.root}/checkpoints`;
  }

  get finalFolder(): string {
    return `${this.root}/final`;
  }

  checkpointFolder(epoch: number): string {
    return `${this.checkpointsPrefix}/epoch-${String(epoch).padStart(4, '0')}`;
  }

  /** The weights the job started from (torchvision-named), kept once when no stored variant holds them. */
  get startWeights(): StoredFile {
    return new StoredFile(this.store, `${this.root}/start-weights.safetensors`);
  }

  /** Where a saved model reads its frozen tensors from; null when it keeps every weight itself. */
  async modelFrozenSource(folder: string): Promise<FrozenSource | null> {
    const modelJson = await readJson(this.store, `${folder}/${MODEL_JSON}`, TfjsModelJson);
    return modelJson ? frozenSourceIn(modelJson.userDefinedMetadata) : null;
  }

  writeFrozenSource(source: FrozenSource): Promise<void> {
    return this.store.write(this.frozenSourceKey, JSON.stringify(source));
  }
  readFrozenSource(): Promise<FrozenSource | null> {
    return readJson(this.store, this.frozenSourceKey, FrozenSource);
  }

  /** What quantises a saved model to int8; null where int8 is not offered for it. */
  readInt8Calibration(folder: string): Promise<Int8Calibration | null> {
    return readJson(this.store, `${folder}/${INT8_FILE}`, Int8Calibration);
  }

  /** A saved model's int8 calibration, or why int8 is not offered for it (the job's own reason where it checked). */
  async int8Of(folder: string): Promise<{ calibration: Int8Calibration } | { reason: string }> {
    const calibration = await this.readInt8Calibration(folder);
    if (calibration) return { calibration };
    if (folder !== this.finalFolder) return { reason: "int8 is calibrated for a job's final model only" };
    const check = (await this.readMetrics())?.int8;
    return { reason: check?.reason ?? 'the job was not quantised (it ended before int8 predictions existed)' };
  }
  writeInt8Calibration(folder: string, calibration: Int8Calibration): Promise<void> {
    return this.store.write(`${folder}/${INT8_FILE}`, JSON.stringify(calibration));
  }

  /** A thumbnail of the validation image whose prediction the metrics keep at `index`. */
  validationImage(index: number): StoredFile {
    return new StoredFile(this.store, `${this.root}/validation/${index}.jpg`);
  }

  /** torchvision-named safetensors of a saved model (written for the final model). */
  torchvisionWeights(folder: string): StoredFile {
    return new StoredFile(this.store, `${folder}/${TORCHVISION_FILE}`);
  }

  /**
   * An epoch checkpoint's optimiser state (the latest's only: older checkpoints keep their weights alone).
   * Only a resume reads it, and only the newest: written and removed with `recycle`.
   */
  optimizerState(folder: string): StoredFile {
    return new StoredFile(this.store, `${folder}/${OPTIMIZER_FILE}`);
  }

  /** A download of a saved model in a format, built on first request. */
  download(label: string, format: CheckpointFormat, precision: DownloadPrecision = 'fp32'): StoredFile {
    return new StoredFile(this.store, `${this.root}/downloads/${downloadName(label, format, precision)}`);
  }

  /** The files a tfjs client needs of a saved model, by name (a tar.gz download holds them). */
  modelFiles(folder: string): Array<{ name: string; file: StoredFile }> {
    return MODEL_FILES.map((name) => ({ name, file: new StoredFile(this.store, `${folder}/${name}`) }));
  }

  /** A checkpoint or final model folder, whole: a half-written one goes this way. */
  removeFolder(folder: string): Promise<void> {
    return this.store.remove(folder);
  }

  writeSummary(summary: ModelSummary): Promise<void> {
    return this.store.write(this.summaryKey, JSON.stringify(summary));
  }
  readSummary(): Promise<ModelSummary | null> {
    return readJson(this.store, this.summaryKey, ModelSummary);
  }

  writeMetrics(metrics: Metrics): Promise<void> {
    return this.store.write(this.metricsKey, JSON.stringify(metrics));
  }
  readMetrics(): Promise<Metrics | null> {
    return readJson(this.store, this.metricsKey, Metrics);
  }

  writePreflight(report: PreflightReport): Promise<void> {
    return this.store.write(this.preflightKey, JSON.stringify(report));
  }
  readPreflight(): Promise<PreflightReport | null> {
    return readJson(this.store, this.preflightKey, PreflightReport);
  }

  /** Written after the model files of a folder: it marks the final model complete. */
  writeModelMetadata(folder: string, metadata: ModelMetadata): Promise<void> {
    return this.store.write(`${folder}/${METADATA_FILE}`, JSON.stringify(metadata));
  }
  readModelMetadata(folder: string): Promise<ModelMetadata | null> {
    return readJson(this.store, `${folder}/${METADATA_FILE}`, ModelMetadata);
  }

  /** Makes an epoch's checkpoint count: call after every other file of it is written. */
  commitCheckpoint(state: CheckpointState): Promise<void> {
    return this.store.write(`${this.checkpointFolder(state.epoch)}/${STATE_FILE}`, JSON.stringify(state));
  }
  readCheckpointState(epoch: number): Promise<CheckpointState | null> {
    return readJson(this.store, `${this.checkpointFolder(epoch)}/${STATE_FILE}`, CheckpointState);
  }

  get interruptedFolder(): string {
    return `${this.checkpointsPrefix}/interrupted`;
  }
  /** Makes the mid-epoch checkpoint count: call after every other file of it is written. */
  commitInterrupted(state: InterruptedState): Promise<void> {
    return this.store.write(`${this.interruptedFolder}/${STATE_FILE}`, JSON.stringify(state));
  }
  readInterruptedState(): Promise<InterruptedState | null> {
    return readJson(this.store, `${this.interruptedFolder}/${STATE_FILE}`, InterruptedState);
  }
  removeInterrupted(): Promise<void> {
    return this.store.remove(this.interruptedFolder);
  }

  /** Epochs with a checkpoint folder, complete or not, oldest first. */
  async checkpointEpochs(): Promise<number[]> {
    const names = await this.store.list(this.checkpointsPrefix);
    return names.flatMap((name) => {
      const match = CHECKPOINT_NAME.exec(name);
      return match ? [Number(match[1])] : [];
    });
  }

  /** Epochs with a complete checkpoint, oldest first. */
  async completeCheckpoints(): Promise<number[]> {
    const epochs: number[] = [];
    for (const epoch of await this.checkpointEpochs()) {
      if (await this.store.stat(`${this.checkpointFolder(epoch)}/${STATE_FILE}`)) epochs.push(epoch);
    }
    return epochs.sort((a, b) => a - b);
  }

  /** Bytes of its models and checkpoints: what counts toward its owner's quota (download archives have their own bound). */
  async modelBytes(): Promise<number> {
    const usages = await Promise.all([this.checkpointsPrefix, this.finalFolder, this.startWeights.key].map((key) => this.store.usage(key)));
    return usages.reduce((sum, bytes) => sum + bytes, 0);
  }

  /** Everything the job kept. */
  removeAll(): Promise<void> {
    return this.store.remove(this.root);
  }

  /** An epoch's checkpoint and its downloads in every format. */
  async removeCheckpoint(epoch: number): Promise<void> {
    await this.optimizerState(this.checkpointFolder(epoch)).remove({ recycle: true });
    await this.store.remove(this.checkpointFolder(epoch));
    for (const format of CheckpointFormat.options) await this.download(this.epochFolder(epoch).label, format).remove();
  }

  async hasFinalModel(): Promise<boolean> {
    return (await this.store.stat(`${this.finalFolder}/${METADATA_FILE}`)) !== null;
  }

  epochFolder(epoch: number): ModelFolder {
    return { folder: this.checkpointFolder(epoch), label: `epoch-${epoch}` };
  }

  get final(): ModelFolder {
    return { folder: this.finalFolder, label: 'final' };
  }

  /** The complete saved model a selector names (NotFoundError when the job has none such). */
  async savedModel(selector: CheckpointSelector): Promise<ModelFolder> {
    if (selector.kind === 'final') {
      if (!(await this.hasFinalModel())) throw new NotFoundError('the job has no final model yet');
      return this.final;
    }
    if (selector.kind === 'best') {
      const bestEpoch = (await this.readMetrics())?.bestEpoch;
      if (!bestEpoch) throw new NotFoundError('the job has no validated epoch yet');
      return this.savedModel({ kind: 'epoch', epoch: bestEpoch });
    }
    const complete = await this.completeCheckpoints();
    const epoch = selector.kind === 'latest' ? complete.at(-1) : complete.find((e) => e === selector.epoch);
    if (epoch === undefined) {
      throw new NotFoundError(
        selector.kind === 'latest' ? 'the job has no checkpoint yet' : `the job has no checkpoint for epoch ${selector.epoch}`,
      );
    }
    return this.epochFolder(epoch);
  }
}

/** A stored file by its key, as the download cache recorded it: removed with its sha256. */
export const removeStoredFile = (store: ArtifactStore, key: string) => new StoredFile(store, key).remove();
