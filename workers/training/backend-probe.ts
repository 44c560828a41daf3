// Run by the worker in a process of its own: picks the backend as its training child will, prints it
// as JSON and exits. The worker never loads tfjs itself: tfjs-node-gpu would take the GPU's memory in a
// process that trains nothing.
import { selectBackend } from '../../engine/backend/backend.js';
import { loadConfig } from '../../schemas/config.js';
import type { BackendProbe } from '../../schemas/model.js';

const config = loadConfig();
const probed: BackendProbe = await selectBackend(config.TFJS_BACKEND, { nativeKernels: config.RETRAIN_NATIVE_KERNELS });
// On its own line and flushed before the exit: a pipe's writes are asynchronous.
process.stdout.write(`\n${JSON.stringify(probed)}\n`, () => process.exit(0));
