import { createHash, randomUUID } from 'node:crypto';
import type { ArtifactStore } from '../../common/artifact-store.js';
import { loadManifest } from '../../common/weights-manifest.js';
import { WeightsStore } from '../../common/weights-store.js';
import type { Config } from '../../schemas/config.js';
import { createReadStream } from 'node:fs';
import { mkdir, readFile, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { download, DownloadError } from '../../common/http-download.js';
import { redisKeys } from '../../common/redis-keys.js';
import { type RedisClient } from '../../common/redis-connection.js';
import type { ManifestEntry, VariantTransform, WeightsManifest, WeightsRecord } from '../../schemas/weights.js';
import { parseSafetensors, safetensorsChunks, type RawTensor } from './safetensors.js';
import { isTorchZip, readTorchStateDict } from './torch-checkpoint.js';
import { checkTensorNames, torchvisionResnet50Shapes } from './torchvision-weights.js';

/** A fetched file that is not what the manifest says: deleted, and named in the error. */
export class WeightsCheckError extends Error {}

/** A variant neither stored nor named by the manifest. */
export class UnknownVariantError extends Error {}

export interface DownloadSettings {
  timeoutMs: number;
  retries: number;
  backoffMs: number;
}

/** What fetching a variant reports: its bytes as they arrive, or that another process is fetching it. */
export interface FetchProgress {
  variant: string;
  bytes: number;
  totalBytes: number | null;
  /** Another worker holds the download; this one waits for its copy. */
  waiting: boolean;
}

export interface VariantSource {
  weights: WeightsStore;
  manifest: WeightsManifest;
  redis: RedisClient;
  prefix: string;
  /** A local folder for downloads in progress (a resumed one goes on from its bytes). */
  downloadDir: string;
  download: DownloadSettings;
  onProgress?: (progress: FetchProgress) => void | Promise<void>;
}

/** The lock's lease: renewed while a download runs, so a dead holder's lapses and another process takes over. */
const LEASE_MS = 60_000;
const WAIT_POLL_MS = 1000;

/** A file's tensors with torchvision names: a torch.save archive or safetensors; DataParallel's `module.` prefix removed. */
export async function torchvisionTensorsOf(file: Uint8Array): Promise<Map<string, RawTensor>> {
  const tensors = isTorchZip(file) ? await readTorchStateDict(file) : parseSafetensors(file);
  const prefixed = [...tensors.keys()].every((name) => name.startsWith('module.'));
  return prefixed ? new Map([...tensors].map(([name, tensor]) => [name.slice('module.'.length), tensor])) : tensors;
}

/**
 * Checks a state_dict against torchvision's resnet50 (every name and shape but the head's, which may have
 * any number of classes) and stores it as the variant `name`: one copy in the artifact store for every host.
 */
export async function storeVariant(
  weights: WeightsStore,
  file: Uint8Array,
  {
    name,
    source,
    sourceSha256,
    transform,
    top1,
  }: { name: string; source: string; sourceSha256: string; transform: VariantTransform; top1: number | null },
): Promise<WeightsRecord> {
  const tensors = await torchvisionTensorsOf(file);
  checkTensorNames(torchvisionResnet50Shapes(tensors.get('fc.bias')?.shape[0] ?? 1000), tensors, 'backbone');
  return weights.publish(safetensorsChunks(tensors, { format: 'pt' }), { name, source, sourceSha256, transform, top1: top1 ?? null });
}

async function sha256Of(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Refuses (and deletes) a file whose size or sha256 is not the manifest's. */
async function checkFetched(file: string, entry: ManifestEntry): Promise<string> {
  const { size } = await stat(file);
  const sizeOk = entry.bytes !== undefined ? size === entry.bytes : Math.abs(size / 1024 ** 2 - (entry.mebibytes ?? 0)) <= 0.0005;
  const sha256 = await sha256Of(file);
  const shaOk = entry.sha256 ? sha256 === entry.sha256 : sha256.startsWith(entry.sha256Prefix ?? '');
  if (sizeOk && shaOk) return sha256;
  await rm(file, { force: true });
  const expectedSize = entry.bytes !== undefined ? `${entry.bytes} bytes` : `${entry.mebibytes} MiB`;
  throw new WeightsCheckError(
    `the file from ${entry.url} was refused and deleted: it has ${size} bytes and sha256 ${sha256}, ` +
      `where the manifest says ${expectedSize} and sha256 ${entry.sha256 ?? `${entry.sha256Prefix}...`}`,
  );
}

/** Downloads, checks and stores one variant (the caller holds its lock). */
async function fetchVariant(name: string, entry: ManifestEntry, source: VariantSource, renew: () => Promise<void>): Promise<WeightsRecord> {
  await mkdir(source.downloadDir, { recursive: true });
  // One file per variant and URL: a worker that died mid-download leaves bytes the next one resumes from.
  const file = path.join(source.downloadDir, `${name}-${createHash('sha256').update(entry.url).digest('hex').slice(0, 12)}.part`);
  let lastRenew = Date.now();
  // Said before the first byte: a host that cannot be reached shows where the job waits, and where it failed.
  await source.onProgress?.({ variant: name, bytes: 0, totalBytes: entry.bytes ?? null, waiting: false });
  await download(entry.url, file, {
    ...source.download,
    expectedBytes: entry.bytes,
    onProgress: (bytes, totalBytes) => {
      void source.onProgress?.({ variant: name, bytes, totalBytes, waiting: false });
      if (Date.now() - lastRenew > LEASE_MS / 3) {
        lastRenew = Date.now();
        void renew();
      }
    },
  });
  const sourceSha256 = await checkFetched(file, entry);
  try {
    return await storeVariant(source.weights, await readFile(file), {
      name,
      source: entry.url,
      sourceSha256,
      transform: entry.transform,
      top1: entry.top1 ?? null,
    });
  } finally {
    await rm(file, { force: true });
  }
}

/**
 * The variant's record once it is in the artifact store: fetched from the manifest's URL on first use,
 * once for all workers (the one that takes the lock downloads it; the others wait for its copy).
 */
export async function ensureVariant(name: string, source: VariantSource): Promise<WeightsRecord> {
  const lock = redisKeys(source.prefix).weightsLock(name);
  const holder = randomUUID();
  for (;;) {
    const stored = await source.weights.record(name);
    if (stored) return stored;
    const entry = source.manifest[name];
    if (!entry) throw new UnknownVariantError(`no weights named "${name}": neither in the artifact store nor in the manifest`);
    if ((await source.redis.set(lock, holder, 'PX', LEASE_MS, 'NX')) === 'OK') {
      const renew = async () => {
        if ((await source.redis.get(lock)) === holder) await source.redis.pexpire(lock, LEASE_MS);
      };
      try {
        if ((await source.weights.record(name)) === null) return await fetchVariant(name, entry, source, renew);
      } finally {
        if ((await source.redis.get(lock)) === holder) await source.redis.del(lock);
      }
      continue;
    }
    await source.onProgress?.({ variant: name, bytes: 0, totalBytes: entry.bytes ?? null, waiting: true });
    await new Promise((resolve) => setTimeout(resolve, WAIT_POLL_MS));
  }
}

export { DownloadError };

/** Weights downloads wait 2 s, 4 s, 8 s ... between attempts: long enough for a blip, short of hiding an outage. */
const DOWNLOAD_BACKOFF_MS = 2000;

/** Where a worker keeps and fetches weight variants: the artifact store, the manifest, Redis for the fetch's lock. */
export async function variantSourceOf(
  config: Config,
  store: ArtifactStore,
  redis: RedisClient,
): Promise<Omit<VariantSource, 'onProgress'>> {
  return {
    weights: new WeightsStore(store),
    manifest: await loadManifest(config.WEIGHTS_MANIFEST),
    redis,
    prefix: config.QUEUE_PREFIX,
    downloadDir: path.join(config.DATA_DIR, '.weights-downloads'),
    download: { timeoutMs: config.WEIGHTS_DOWNLOAD_TIMEOUT_MS, retries: config.WEIGHTS_DOWNLOAD_RETRIES, backoffMs: DOWNLOAD_BACKOFF_MS },
  };
}
