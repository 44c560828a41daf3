import * as tf from '@tensorflow/tfjs';
import { createRequire } from 'node:module';
import { BackendChoice, type BackendReport } from '../../schemas/model.js';
import { registerWasmTrainingKernels } from './wasm-conv-gradients.js';

export type { BackendChoice };
export type BackendInfo = BackendReport;

const PACKAGES: Record<BackendChoice, string> = {
  'node-gpu': '@tensorflow/tfjs-node-gpu',
  node: '@tensorflow/tfjs-node',
  wasm: '@tensorflow/tfjs-backend-wasm',
  cpu: '@tensorflow/tfjs-backend-cpu',
};

const require = createRequire(import.meta.url);
// Production flags: no debug-mode NaN checks, and no console banner urging tfjs-node on the cpu backend.
tf.env().set('PROD', true);

function packageVersion(name: string): string {
  return (require(`${name}/package.json`) as { version: string }).version;
}

async function activate(choice: BackendChoice): Promise<BackendInfo> {
  let backend: string;
  if (choice === 'node-gpu' || choice === 'node') {
    // Optional dependencies: absent where libtensorflow could not be downloaded at install time.
    await import(PACKAGES[choice]);
    backend = 'tensorflow';
  } else {
    if (choice === 'wasm') await import('@tensorflow/tfjs-backend-wasm');
    backend = choice;
  }
  if (!(await tf.setBackend(backend))) throw new Error(`tfjs backend ${backend} failed to initialise`);
  await tf.ready();
  if (choice === 'wasm') registerWasmTrainingKernels();
  return { choice, backend, package: PACKAGES[choice], version: packageVersion(PACKAGES[choice]) };
}

let active: BackendInfo | undefined;

/**
 * Picks the fastest backend that loads here: tfjs-node-gpu, tfjs-node, wasm, cpu. With `requested`
 * (from TFJS_BACKEND) only that one is tried, and failing to load it is an error, not a silent fallback.
 */
export async function selectBackend(requested: BackendChoice | 'auto' = 'auto'): Promise<BackendInfo> {
  if (active && (requested === 'auto' || requested === active.choice)) return active;
  const candidates = requested === 'auto' ? BackendChoice.options : [requested];
  const failures: string[] = [];
  for (const choice of candidates) {
    try {
      active = await activate(choice);
      return active;
    } catch (error) {
      failures.push(`${choice}: ${(error as Error).message.split('\n')[0]}`);
    }
  }
  throw new Error(`no tfjs backend could start (${failures.join('; ')})`);
}
