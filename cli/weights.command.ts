import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { createLogger } from '../common/logger.js';
import { openArtifactStore } from '../common/open-artifact-store.js';
import { redisConnection, whenReady } from '../common/redis-connection.js';
import { WeightsCatalog } from '../common/weights-catalog.js';
import { WeightsStore } from '../common/weights-store.js';
import { loadConfig } from '../schemas/config.js';
import { DEFAULT_TRANSFORM, VariantName } from '../schemas/weights.js';
import { ensureVariant, storeVariant, variantSourceOf, type FetchProgress } from '../engine/model/weight-variants.js';
import { UsageError } from './usage.js';

export const WEIGHTS_USAGE = `retrain weights list                    the variants jobs may name in "weights", and which the store holds
       retrain weights pull [NAME]             fetch a variant the manifest names into the artifact store (default imagenet)
       retrain weights import FILE --as NAME   store a torchvision resnet50 state_dict (.pth or .safetensors) as NAME
                                               [--resize-at-224 N: its evaluation resize, 256 unless NAME is a built-in's]
       retrain weights remove NAME             remove a variant from the store (refused while a job's saved models read it)`;

/** Progress on standard error: a line each tenth of the way (or a note that another process is fetching it). */
function progressPrinter() {
  let shown = -1;
  return ({ variant, bytes, totalBytes, waiting }: FetchProgress) => {
    if (waiting) {
      if (shown !== -2) process.stderr.write(`retrain: another process is fetching ${variant}; waiting for its copy\n`);
      shown = -2;
      return;
    }
    const tenth = totalBytes ? Math.floor((10 * bytes) / totalBytes) : Math.floor(bytes / 1e7);
    if (tenth === shown) return;
    shown = tenth;
    process.stderr.write(`retrain: ${variant} ${bytes}${totalBytes ? ` of ${totalBytes}` : ''} bytes\n`);
  };
}

/**
 * Weight variants in the service's artifact store (ARTIFACTS_DIR or ARTIFACT_STORE) and manifest
 * (WEIGHTS_MANIFEST): run it where the service's environment is, as `keys` is.
 */
export async function weights(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: { as: { type: 'string' }, 'resize-at-224': { type: 'string' } },
    allowPositionals: true,
  });
  const [action, ...rest] = positionals;
  if (action === 'list' && rest.length) throw new UsageError('weights list takes no arguments');
  if (action === 'pull' && rest.length > 1) throw new UsageError('weights pull takes one variant name at most');
  if (action === 'import' && (rest.length !== 1 || !values.as)) throw new UsageError('weights import needs FILE and --as NAME');
  if (action === 'remove' && rest.length !== 1) throw new UsageError('weights remove needs one variant name');
  if (!['list', 'pull', 'import', 'remove'].includes(action))
    throw new UsageError(action ? `unknown weights action ${action}` : 'weights needs an action');
  const name = action === 'import' ? values.as : (rest[0] ?? 'imagenet');
  const parsedName = VariantName.safeParse(name);
  if (!parsedName.success) throw new UsageError(`${action === 'import' ? '--as' : 'NAME'}: ${parsedName.error.issues[0].message}`);
  const resizeAt224 = values['resize-at-224'] === undefined ? undefined : Number(values['resize-at-224']);
  if (resizeAt224 !== undefined && !(Number.isInteger(resizeAt224) && resizeAt224 >= 224 && resizeAt224 <= 512))
    throw new UsageError('--resize-at-224: a whole number of pixels from 224 to 512');

  const config = loadConfig();
  const store = await openArtifactStore(config);
  const redis = redisConnection(config, 'producer', createLogger('cli', 'silent'));
  try {
    const source = await variantSourceOf(config, store, redis);
    if (action === 'list') {
      for (const variant of await new WeightsCatalog(source.weights, source.manifest).list())
        process.stdout.write(`${JSON.stringify(variant)}\n`);
    } else if (action === 'remove') {
      await source.weights.remove(parsedName.data);
      process.stdout.write(`${JSON.stringify({ removed: parsedName.data })}\n`);
    } else if (action === 'pull') {
      await whenReady(redis, 5000);
      process.stdout.write(`${JSON.stringify(await ensureVariant(parsedName.data, { ...source, onProgress: progressPrinter() }))}\n`);
    } else {
      const file = await readFile(rest[0]);
      const sourceSha256 = createHash('sha256').update(file).digest('hex');
      const entry = source.manifest[parsedName.data];
      // The published top-1 belongs to the published file only.
      const published = entry && (entry.sha256 ? entry.sha256 === sourceSha256 : sourceSha256.startsWith(entry.sha256Prefix ?? '-'));
      const record = await storeVariant(new WeightsStore(store), file, {
        name: parsedName.data,
        source: `imported from ${path.basename(rest[0])}`,
        sourceSha256,
        transform: resizeAt224 ? { resizeAt224 } : (entry?.transform ?? DEFAULT_TRANSFORM),
        top1: published ? (entry.top1 ?? null) : null,
      });
      process.stdout.write(`${JSON.stringify(record)}\n`);
    }
  } finally {
    redis.disconnect();
  }
}
