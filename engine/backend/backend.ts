import * as tf from '../tf.js';
import { createRequire } from 'node:module';
import { BackendChoice, type BackendProbe } from '../../schemas/model.js';
import { registerOneDnnKernels } from '../native/kernels/register.js';
import { loadOneDnn } from '../native/onednn.js';
import { adviseHugePages, type WasmBackend } from '../native/kernels/heap.js';
import { registerWasmTrainingKernels } from './wasm-conv-gradients.js';
import { registerSharedIdentity } from './wasm-identity.js';
import { registerHeapSlice } from './wasm-slice.js';

export type { BackendChoice };
/** What runs the tensors; `nativeKernelsMissing` says why wasm runs without the oneDNN kernels (one log line's worth). */
export type BackendInfo = BackendProbe;

export interface BackendOptions {
  /** Replace the wasm backend's convolutions and matmuls with the oneDNN addon's where it loads (RETRAIN_NATIVE_KERNELS). */
  nativeKernels?: boolean;
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

/** The kernels under the wasm backend: oneDNN's once registered (for the life of the process), else wasm's own. */
function wasmKernels(nativeKernels: boolean): Pick<BackendInfo, 'kernels' | 'nativeKernelsMissing'> {
  registerWasmTrainingKernels();
  registerSharedIdentity();
  registerHeapSlice();
  if (!nativeKernels) return { kernels: 'wasm', nativeKernelsMissing: 'turned off (RETRAIN_NATIVE_KERNELS=0)' };
  const loaded = loadOneDnn();
  if ('missing' in loaded) return { kernels: 'wasm', nativeKernelsMissing: `the oneDNN addon is ${loaded.missing}` };
  registerOneDnnKernels(loaded.addon);
  adviseHugePages(loaded.addon, tf.backend() as WasmBackend);
  return { kernels: `onednn ${loaded.addon.version()}` };
}

async function activate(choice: BackendChoice, options: BackendOptions): Promise<BackendInfo> {
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
  const kernels = choice === 'wasm' ? wasmKernels(options.nativeKernels ?? true) : { kernels: backend };
  return { choice, backend, package: PACKAGES[choice], version: packageVersion(PACKAGES[choice]), ...kernels };
}

let active: BackendInfo | undefined;

/**
 * Picks the fastest backend that loads here: tfjs-node-gpu, tfjs-node, wasm, cpu. With `requested`
 * (from TFJS_BACKEND) only that one is tried, and failing to load it is an error, not a silent fallback.
 */
export async function selectBackend(requested: BackendChoice | 'auto' = 'auto', options: BackendOptions = {}): Promise<BackendInfo> {
  if (active && (requested === 'auto' || requested === active.choice)) return active;
  const candidates = requested === 'auto' ? BackendChoice.options : [requested];
  const failures: string[] = [];
  for (const choice of candidates) {
    try {
      active = await activate(choice, options);
      return active;
    } catch (error) {
      failures.push(`${choice}: ${(error as Error).message.split('\n')[0]}`);
    }
  }
  throw new Error(`no tfjs backend could start (${failures.join('; ')})`);
}
