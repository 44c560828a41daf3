// Messages between the API's main thread and its worker threads (structured-cloned, same codebase).
import type { ArtifactStoreSettings, Config } from '../../schemas/config.js';
import type { DatasetSpec, PreflightOptions } from '../../schemas/dataset.js';
import type { ImagePrediction, PredictPrecision } from '../../schemas/predict.js';

/** What every thread is started with: where to find things, on which backend to run. */
export interface ThreadSettings {
  dataDir: string;
  artifacts: ArtifactStoreSettings;
  backend: Config['TFJS_BACKEND'];
  nativeKernels: boolean;
}

export interface PreflightRequest {
  dataset: DatasetSpec;
  options: PreflightOptions;
  /** Where a synthetic set is written for this preflight alone (the API removes it after the answer). */
  syntheticRoot: string | null;
}

export interface PredictRequest {
  jobId: string;
  /** The saved model's folder in the store: the job's final model, or the checkpoint a model alias names. */
  folder: string;
  /** Files the API streamed the uploads into; it removes them after the answer. */
  images: Array<{ name: string; path: string }>;
  topK: number;
  /** Unset: the fastest the model and this host offer. */
  precision: PredictPrecision | undefined;
}

export type PredictOutcome =
  | { ok: true; predictions: ImagePrediction[]; precision: PredictPrecision }
  | { ok: false; errors: Array<{ index: number; file: string; message: string }> }
  /** The precision asked for is not offered for this model (why). */
  | { ok: false; unavailable: string };
