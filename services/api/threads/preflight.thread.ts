// Dataset preflight for the API on a worker thread: decoding every image never blocks requests.
import { parentPort, workerData } from 'node:worker_threads';
import type { PreflightReport } from '../../../schemas/dataset.js';
import { resolveDataset } from '../../../engine/data/datasets.js';
import { preflight } from '../../../engine/data/preflight.js';
import { serveThreadRpc } from '../thread-rpc.js';
import type { PreflightRequest, ThreadSettings } from '../thread-protocol.js';

const { dataDir } = workerData as ThreadSettings;

serveThreadRpc<PreflightRequest, PreflightReport>(parentPort, async ({ dataset, options, syntheticRoot }) =>
  preflight(await resolveDataset(dataset, dataDir, syntheticRoot ?? undefined), options),
);
