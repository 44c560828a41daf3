// `npm start`: the API and one training worker for a single machine, with local artifact storage.
// Starts a session Redis when none answers at REDIS_URL and a redis-server binary exists.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { persistentRedisArgs } from '../common/redis-connection.js';
import { createLogger } from '../common/logger.js';
import { loadConfig } from '../schemas/config.js';

const config = loadConfig();
const log = createLogger('start', config.LOG_LEVEL);
const children: ChildProcess[] = [];
let stopping = false;

function reachable(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port, timeout: 500 }, () => {
      socket.destroy();
      resolve(true);
    });
    socket.on('error', () => resolve(false));
    socket.on('timeout', () => {
      socket.destroy();
      resolve(false);
    });
  });
}

/** `ownGroup`: out of the terminal's process group, so Ctrl-C reaches it only through stop(), last. */
function run(name: string, command: string, args: string[], ownGroup = false): ChildProcess {
  const child = spawn(command, args, { stdio: 'inherit', env: process.env, detached: ownGroup });
  children.push(child);
  child.on('exit', (code, signal) => {
    if (!stopping) {
      log.error({ process: name, exit: signal ?? code }, `${name} exited; stopping the rest`);
      void stop(1);
    }
  });
  return child;
}

async function stop(code: number) {
  if (stopping) return;
  stopping = true;
  // Ordered, last started first: the API stops taking requests, then the worker, then the session Redis.
  for (const child of [...children].reverse()) {
    if (child.exitCode !== null || child.signalCode !== null) continue;
    child.kill('SIGTERM');
    await new Promise((resolve) => child.once('exit', resolve));
  }
  process.exit(code);
}

/**
 * Fetches the default weights in the background, so the first job need not wait for them: never in the
 * way of the start, and one line whatever comes of it (offline, a job says the same and how to go on).
 */
function pullImageNetWeights(): void {
  let errors = '';
  const pull = spawn(process.execPath, ['bin/retrain.mjs', 'weights', 'pull', 'imagenet'], { stdio: ['ignore', 'ignore', 'pipe'] });
  pull.stderr.on('data', (chunk: Buffer) => (errors = `${errors}${chunk.toString()}`.slice(-2000)));
  pull.on('exit', (code) => {
    if (stopping) return;
    if (code === 0) log.info('ImageNet weights (imagenet) are in the artifact store');
    else {
      const why =
        errors
          .trim()
          .split('\n')
          .at(-1)
          ?.replace(/^retrain: /, '') ?? `exit ${code}`;
      log.warn(
        { why },
        'could not fetch the ImageNet weights now; a job fetches them when it needs them, or: npx retrain weights import FILE --as imagenet',
      );
    }
  });
  children.push(pull);
}

const url = new URL(config.REDIS_URL);
const port = Number(url.port || 6379);
if (!(await reachable(url.hostname, port))) {
  const local = ['127.0.0.1', 'localhost', '::1'].includes(url.hostname);
  if (!local || spawnSync('redis-server', ['--version']).status !== 0) {
    log.fatal({ redis: config.REDIS_URL }, 'no Redis answers; start one or set REDIS_URL');
    process.exit(1);
  }
  const redisDir = path.join(config.DATA_DIR, '.redis');
  mkdirSync(redisDir, { recursive: true });
  log.info({ redis: config.REDIS_URL, dir: redisDir }, 'no Redis answers; starting redis-server for this session (AOF on)');
  run(
    'redis-server',
    'redis-server',
    // AOF in the data folder: queued and running jobs survive a restart of this Redis.
    persistentRedisArgs(port, redisDir),
    true,
  );
  for (let i = 0; i < 50 && !(await reachable(url.hostname, port)); i++) await new Promise((r) => setTimeout(r, 100));
}
mkdirSync(config.ARTIFACTS_DIR, { recursive: true });
mkdirSync(config.DATA_DIR, { recursive: true });
const node = [...process.execArgv];
run('worker', process.execPath, [...node, 'workers/training/main.ts']);
run('api', process.execPath, [...node, 'services/api/main.ts']);
pullImageNetWeights();
process.on('SIGINT', () => void stop(0));
process.on('SIGTERM', () => void stop(0));
