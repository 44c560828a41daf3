import { Worker, type ResourceLimits } from 'node:worker_threads';

/** What no thread needs and none should be able to leak (a dependency that logs its environment, say). */
const WITHHELD_VARIABLES = ['ADMIN_API_KEY'];

/**
 * A worker thread running a TypeScript module. Worker threads do not inherit tsx's loader hooks on
 * Node 20, so the thread registers them itself before importing the module.
 */
export function startModuleThread(entry: URL, workerData: unknown, resourceLimits: ResourceLimits): Worker {
  const bootstrap = `import('tsx/esm/api').then(({ register }) => { register(); return import(${JSON.stringify(entry.href)}); })`;
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !WITHHELD_VARIABLES.includes(name)));
  return new Worker(bootstrap, { eval: true, env, workerData, resourceLimits });
}
