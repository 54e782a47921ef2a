// A Redis Cluster of this test's own: three masters on free local ports (no replicas, nothing kept
// on disk), made with `redis-server --cluster-enabled yes` and `redis-cli --cluster create`.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { freePort } from './processes.js';
import { until } from './redis.js';

export interface PrivateCluster {
  nodes: Array<{ host: string; port: number }>;
  stop(): Promise<void>;
}

export async function privateCluster(masters = 3): Promise<PrivateCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'qo-cluster-'));
  const ports: number[] = [];
  const servers: ChildProcess[] = [];
  const stop = async () => {
    for (const server of servers) server.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    for (let i = 0; i < masters; i++) {
      const port = await freePort();
      ports.push(port);
      servers.push(
        spawn(
          'redis-server',
          ['--port', String(port), '--bind', '127.0.0.1', '--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${port}.conf`, '--dir', dir, '--save', '', '--appendonly', 'no'],
          { stdio: 'ignore' },
        ),
      );
    }
    for (const port of ports) {
      const probe = new Redis({ port, host: '127.0.0.1', lazyConnect: true, retryStrategy: () => null });
      probe.on('error', () => {});
      await until(async () => probe.connect().then(() => true, () => false), 10_000, `cluster node ${port} up`);
      probe.disconnect();
    }
    await promisify(execFile)('redis-cli', ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes']);
    for (const port of ports) {
      const client = new Redis({ port, host: '127.0.0.1' });
      await until(async () => String(await client.cluster('INFO')).includes('cluster_state:ok'), 20_000, `cluster state ok on ${port}`);
      client.disconnect();
    }
  } catch (error) {
    await stop();
    throw error;
  }
  return { nodes: ports.map((port) => ({ host: '127.0.0.1', port })), stop };
}
