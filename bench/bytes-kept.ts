// What a finished job keeps in the artifact store: `npm run bench:bytes` (Redis on REDIS_URL, Debian's
// dataset-fashion-mnist and python3-torch). A feature-extraction and a layer4 fine-tuning job of 5 epochs
// on 1,000 Fashion-MNIST photos at 32 px from "imagenet" weights (a seeded torchvision checkpoint stands
// in: their bytes are the real ones'), with the default checkpoints (latest and best kept). Prints JSON:
// the bytes under each job's folder but its download cache, by part.
import { existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { completedJob, startService, storeStandInWeights } from '../test/helpers/service.js';
import { standInReference } from '../test/helpers/torch.js';
import { FASHION_MNIST, writeFashionMnistFolder } from './fashion-mnist.js';

const bytesUnder = (entry: string): number =>
  statSync(entry).isDirectory()
    ? readdirSync(entry).reduce((sum, name) => sum + bytesUnder(path.join(entry, name)), 0)
    : statSync(entry).size;

const JOBS = {
  feature_extraction: { mode: 'feature_extraction' },
  fine_tuning_layer4: { mode: 'fine_tuning', fineTuning: { trainableFrom: 'layer4' } },
};

async function main() {
  if (!existsSync(FASHION_MNIST)) return { unavailable: 'apt-get install dataset-fashion-mnist' };
  const service = await startService('bench-bytes', { LOG_LEVEL: 'warn' });
  try {
    await storeStandInWeights(service.store, path.join(standInReference(['--seed', '1', '--sizes', '32']), 'weights.safetensors'));
    mkdirSync(service.config.DATA_DIR, { recursive: true });
    await writeFashionMnistFolder(path.join(service.config.DATA_DIR, 'fashion'), 1000);
    await service.startWorker();
    const kept: Record<string, Record<string, number>> = {};
    for (const [name, spec] of Object.entries(JOBS)) {
      const { id } = await completedJob(service, {
        ...spec,
        weights: 'imagenet',
        inputSize: 32,
        epochs: 5,
        dataset: { type: 'folder', path: 'fashion' },
      });
      const folder = path.join(service.config.ARTIFACTS_DIR, 'jobs', id);
      const parts = Object.fromEntries(
        readdirSync(folder)
          .filter((part) => part !== 'downloads')
          .map((part) => [part, bytesUnder(path.join(folder, part))]),
      );
      kept[name] = { ...parts, total: Object.values(parts).reduce((sum, bytes) => sum + bytes, 0) };
    }
    return { setup: { epochs: 5, images: 1000, inputSize: 32, weights: 'imagenet (a seeded stand-in)' }, kept };
  } finally {
    await service.stop();
  }
}

process.stdout.write(`${JSON.stringify(await main(), null, 2)}\n`);
process.exit(0);
