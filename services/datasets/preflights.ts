import { randomUUID } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { isDeepStrictEqual } from 'node:util';
import path from 'node:path';
import type { ArtifactStore } from '../../common/artifact-store.js';
import { removeEntriesOlderThan } from '../../common/cache-eviction.js';
import { fetchUpload } from '../../common/shared-uploads.js';
import type { Caller } from '../../schemas/auth.js';
import { PreflightOptions, type DatasetSpec, type PreflightReport, type SyntheticDataset } from '../../schemas/dataset.js';
import { checkDataset } from './check-dataset.js';
import type { DatasetQuota } from './dataset-quota.js';

const DEFAULT_OPTIONS = PreflightOptions.parse({});

/** Under DATA_DIR: the synthetic sets preflights write, one folder per request, removed after its answer. */
export const SYNTHETIC_PREFLIGHTS = '.synthetic-preflights';

/** Runs a preflight off the API's main thread; a synthetic set is written under `syntheticRoot`. */
export type PreflightRunner = (
  request: { dataset: DatasetSpec; options: PreflightOptions; syntheticRoot: string | null },
  caller: Caller,
) => Promise<PreflightReport>;

/** The most a synthetic set takes as PNG files: its pixel noise leaves nearly nothing to compress. */
export function syntheticBytes({ numClasses, imagesPerClass, imageSize }: SyntheticDataset): number {
  const perImage = imageSize * imageSize * 3 + imageSize + 1024; // RGB, a filter byte per row, headers
  return numClasses * imagesPerClass * perImage;
}

/**
 * Preflight reports of a dataset spec, without training. A synthetic set is generated for the
 * request alone, its bytes reserved against the caller's dataset quota while it exists, and removed
 * after the answer, whatever the answer (a thread stopped mid-write included): a preflight keeps nothing.
 */
export class Preflights {
  private readonly syntheticRoot: string;

  constructor(
    private readonly dataDir: string,
    private readonly store: ArtifactStore,
    private readonly quota: DatasetQuota,
    private readonly run: PreflightRunner,
  ) {
    this.syntheticRoot = path.join(dataDir, SYNTHETIC_PREFLIGHTS);
  }

  async check(caller: Caller, dataset: DatasetSpec, options: PreflightOptions): Promise<PreflightReport> {
    if (dataset.type !== 'synthetic') {
      const { record } = await checkDataset(dataset, { dataDir: this.dataDir, store: this.store }, caller);
      // An upload was checked with the default options when it arrived: that report is kept in its record.
      if (record && isDeepStrictEqual(options, DEFAULT_OPTIONS)) return record.preflight;
      // Other options read its files again: on a shared store, fetched to this host first (evicted like any cache).
      if (record && this.store.shared) await fetchUpload(this.store, this.dataDir, record.id);
      return this.run({ dataset, options, syntheticRoot: null }, caller);
    }
    const id = randomUUID();
    const root = path.join(this.syntheticRoot, id);
    await this.quota.reserve(caller, id, syntheticBytes(dataset), 'this synthetic data set');
    try {
      return await this.run({ dataset, options, syntheticRoot: root }, caller);
    } finally {
      await rm(root, { recursive: true, force: true });
      await this.quota.release(caller.owner, id);
    }
  }

  /** Removes what a crashed process left: folders older than any preflight may run (another process may be writing one). */
  sweep(olderThanMs: number): Promise<string[]> {
    return removeEntriesOlderThan(this.syntheticRoot, olderThanMs);
  }
}
