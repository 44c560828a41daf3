import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import net from 'node:net';
import { persistentRedisArgs } from '../../common/redis-connection.js';
import { freePort } from './ports.js';
import { sleep } from './service.js';
import { tempDir } from './torch.js';

const answers = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => socket.end(() => resolve(true))).once('error', () => resolve(false));
  });

/** A redis-server of the test's own on loopback, with an append-only file, as `npm start` and docker-compose run it. */
export async function startRedis(port: number, dir: string, extraArgs: string[] = []): Promise<ChildProcess> {
  const server = spawn('redis-server', [...persistentRedisArgs(port, dir), ...extraArgs], { stdio: 'ignore' });
  for (let i = 0; i < 100 && !(await answers(port)); i++) await sleep(100);
  assert.ok(await answers(port), `redis-server started on ${port}`);
  return server;
}

/** SIGKILL, by process id: a crash, and nothing left behind. */
export async function stopRedis(server: ChildProcess): Promise<void> {
  if (server.exitCode !== null || server.signalCode !== null) return;
  const exited = new Promise((resolve) => server.once('exit', resolve));
  server.kill('SIGKILL');
  await exited;
}

export interface RedisCluster {
  /** REDIS_CLUSTER_NODES for the service. */
  nodes: string;
  stop(): Promise<void>;
}

/** A Redis Cluster of `size` masters on loopback (`--cluster-enabled yes`, `redis-cli --cluster create`), slots all assigned. */
export async function startRedisCluster(size = 3): Promise<RedisCluster> {
  const dir = tempDir('redis-cluster');
  const ports: number[] = [];
  const servers: ChildProcess[] = [];
  const stop = async () => {
    await Promise.all(servers.map(stopRedis));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    for (let i = 0; i < size; i++) {
      const port = await freePort();
      ports.push(port);
      servers.push(
        await startRedis(port, dir, [
          '--cluster-enabled',
          'yes',
          '--cluster-config-file',
          `nodes-${port}.conf`,
          '--appendfilename',
          `aof-${port}`,
        ]),
      );
    }
    const nodes = ports.map((port) => `127.0.0.1:${port}`);
    execFileSync('redis-cli', ['--cluster', 'create', ...nodes, '--cluster-replicas', '0', '--cluster-yes'], { stdio: 'pipe' });
    const clusterOk = () =>
      ports.every((port) => /cluster_state:ok/.test(execFileSync('redis-cli', ['-p', String(port), 'cluster', 'info']).toString()));
    for (let i = 0; i < 100 && !clusterOk(); i++) await sleep(100);
    assert.ok(clusterOk(), 'every node says cluster_state:ok');
    return { nodes: nodes.join(','), stop };
  } catch (error) {
    await stop();
    throw error;
  }
}
