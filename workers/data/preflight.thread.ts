// Dataset preflight for the API on a worker thread: decoding every image never blocks requests.
import { parentPort } from 'node:worker_threads';
import type { DatasetSpec } from '../../schemas/dataset.js';
import { serveThreadRpc } from '../../services/api/thread-rpc.js';
import { resolveDataset } from './datasets.js';
import { preflight, type PreflightReport } from './preflight.js';

export interface PreflightRequest {
  dataDir: string;
  dataset: DatasetSpec;
  validationSplit: number;
  seed: number;
  minImagesPerClass: number;
}

serveThreadRpc<PreflightRequest, PreflightReport>(parentPort!, async ({ dataDir, dataset, ...options }) =>
  preflight(await resolveDataset(dataset, dataDir), options),
);
