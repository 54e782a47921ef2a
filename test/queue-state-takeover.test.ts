// One reader per cluster, and takeover when it dies: several worker processes watch the same queue
// (BullMQ on Redis, pg-boss on PostgreSQL); exactly one reports its state; SIGKILL of that one and
// another reports within a few intervals.
//
// Timing tolerance: the interval is 1 s and the read timeout 0.5 s. By design a survivor takes over
// within the lease's margin plus about one interval (Redis: when the dead holder's lease of 1.5 s
// runs out; PostgreSQL: the server releases the lock with the dead connection, and the survivors try
// at random points of each interval). The assertion is a loose bound of 4 intervals, for a loaded
// machine; the measured takeover is printed.
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { dropSchemas, pgUrl, schemaName } from './helpers/postgres.js';
import { queueName, sleep, until } from './helpers/redis.js';

const require = (await import('node:module')).createRequire(import.meta.url);
const fixture = fileURLToPath(new URL('./fixtures/state-holder.mjs', import.meta.url));
const INTERVAL = 1_000;
const TIMEOUT = 500;
const PROCESSES = 4;

interface Line {
  pid: number;
  t: number;
  reporting: boolean;
}

const children: ChildProcess[] = [];
afterAll(() => {
  for (const child of children) child.kill('SIGKILL');
});

function start(args: string[]): { child: ChildProcess; lines: Line[] } {
  const child = spawn(process.execPath, [fixture, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  const lines: Line[] = [];
  let rest = '';
  child.stdout!.on('data', (d: Buffer) => {
    const text = rest + d.toString();
    const parts = text.split('\n');
    rest = parts.pop()!;
    for (const part of parts) if (part) lines.push(JSON.parse(part) as Line);
  });
  return { child, lines };
}

/** The processes whose last `n` lines all report (or, with `reporting` false, none do). */
const steadily = (lines: Line[], n: number, reporting = true) => lines.length >= n && lines.slice(-n).every((l) => l.reporting === reporting);

async function takeover(args: string[]): Promise<number> {
  const group = Array.from({ length: PROCESSES }, () => start(args));
  // Settled: one process reports on each of its last 8 collections (two intervals), the others on none.
  await until(
    () => group.filter((p) => steadily(p.lines, 8)).length === 1 && group.filter((p) => steadily(p.lines, 8, false)).length === PROCESSES - 1,
    30_000,
    'one reporter among the processes',
  );
  const holder = group.find((p) => steadily(p.lines, 8))!;
  holder.child.kill('SIGKILL');
  const killedAt = Date.now();
  const survivors = group.filter((p) => p !== holder);
  await until(() => survivors.some((p) => p.lines.some((l) => l.t > killedAt && l.reporting)), 15_000, 'takeover');
  const tookOver = Math.min(...survivors.flatMap((p) => p.lines.filter((l) => l.t > killedAt && l.reporting).map((l) => l.t)));
  // Then exactly one survivor reports, steadily.
  await until(
    () => survivors.filter((p) => steadily(p.lines, 8)).length === 1 && survivors.filter((p) => steadily(p.lines, 8, false)).length === PROCESSES - 2,
    15_000,
    'one reporter among the survivors',
  );
  for (const p of survivors) p.child.kill('SIGKILL');
  return tookOver - killedAt;
}

describe('takeover after the holder is killed', () => {
  it('Redis (BullMQ): another process reports within a few intervals', async () => {
    const name = queueName('takeover');
    const ms = await takeover(['bullmq', name, String(INTERVAL), String(TIMEOUT)]);
    console.log(`BullMQ takeover after SIGKILL: ${ms} ms (interval ${INTERVAL} ms, ${PROCESSES} processes)`);
    expect(ms).toBeLessThan(4 * INTERVAL);
    const { Redis } = require('ioredis') as typeof import('ioredis');
    const redis = new Redis();
    const keys = await redis.keys(`bull:${name}:*`);
    if (keys.length > 0) await redis.del(...keys);
    await redis.del(`queue-otel:bull:${name}:state-lease`);
    redis.disconnect();
  }, 90_000);

  it('PostgreSQL (pg-boss): another process reports within a few intervals', async () => {
    const schema = schemaName('takeover');
    const name = queueName('takeover').replace(/-/g, '_');
    const { PgBoss } = require('pg-boss') as typeof import('pg-boss');
    const boss = new PgBoss({ connectionString: pgUrl(), schema, supervise: false, schedule: false });
    boss.on('error', () => {});
    await boss.start();
    await boss.createQueue(name);
    await boss.stop({ graceful: false });
    try {
      const ms = await takeover(['pg-boss', name, String(INTERVAL), String(TIMEOUT), schema]);
      console.log(`pg-boss takeover after SIGKILL: ${ms} ms (interval ${INTERVAL} ms, ${PROCESSES} processes)`);
      expect(ms).toBeLessThan(4 * INTERVAL);
    } finally {
      await sleep(200);
      await dropSchemas(schema);
    }
  }, 90_000);
});
