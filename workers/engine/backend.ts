import * as tf from '@tensorflow/tfjs';
import { createRequire } from 'node:module';
import { registerWasmTrainingKernels } from './wasm-conv-gradients.js';

/** Preference order at worker start; `TFJS_BACKEND` picks one explicitly. */
export const BACKEND_CHOICES = ['node-gpu', 'node', 'wasm', 'cpu'] as const;
export type BackendChoice = (typeof BACKEND_CHOICES)[number];

export interface BackendInfo {
  choice: BackendChoice;
  /** The tfjs backend name (`tensorflow` for both native packages). */
  backend: string;
  package: string;
  version: string;
}

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
  const candidates = requested === 'auto' ? BACKEND_CHOICES : [requested];
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

export function parseBackendChoice(value: string | undefined): BackendChoice | 'auto' {
  if (value === undefined || value === '' || value === 'auto') return 'auto';
  if ((BACKEND_CHOICES as readonly string[]).includes(value)) return value as BackendChoice;
  throw new Error(`TFJS_BACKEND must be one of auto, ${BACKEND_CHOICES.join(', ')}; got ${value}`);
}
