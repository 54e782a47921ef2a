// "No extra Redis command per job" checks: a private redis-server (no other client's traffic, which
// on the shared server can also break ioredis's MONITOR parser), and the commands seen under MONITOR.
import { type ChildProcess, spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { Redis } from 'ioredis';
import { until } from './redis.js';

export interface PrivateRedis {
  host: string;
  port: number;
  stop(): Promise<void>;
}

/**
 * Starts a redis-server of this test's own (nothing kept on disk) on a free port, or on `port`
 * to bring a stopped one back where its clients reconnect.
 */
export async function privateRedis(onPort?: number): Promise<PrivateRedis> {
  const port = onPort ?? (await freePort());
  const server: ChildProcess = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  const probe = new Redis({ port, host: '127.0.0.1', lazyConnect: true, retryStrategy: () => null });
  // Refused connections are expected until the server listens; connect() rejects for each, and
  // without a listener ioredis would also print each one as an unhandled 'error' event.
  probe.on('error', () => {});
  await until(async () => probe.connect().then(() => true, () => false), 10_000, 'private redis up');
  probe.disconnect();
  return {
    host: '127.0.0.1',
    port,
    async stop() {
      server.kill('SIGKILL');
    },
  };
}

function freePort(): Promise<number> {
  return new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
}

/** Redis commands (other than blocking waits) that name `marker` in a key while `run` runs. */
export async function commandsUnder(redis: { host: string; port: number }, marker: string, run: () => Promise<void>): Promise<Map<string, number>> {
  const client = new Redis({ host: redis.host, port: redis.port });
  const monitor = await client.monitor();
  const counts = new Map<string, number>();
  monitor.on('monitor', (_time: string, args: string[]) => {
    if (!args.some((a) => typeof a === 'string' && a.includes(marker))) return;
    const command = String(args[0]).toUpperCase();
    if (command.startsWith('B')) return; // blocking waits depend on timing, not on jobs
    counts.set(command, (counts.get(command) ?? 0) + 1);
  });
  try {
    await run();
    await new Promise((r) => setTimeout(r, 200));
  } finally {
    monitor.disconnect();
    client.disconnect();
  }
  return counts;
}
