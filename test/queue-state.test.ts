// Queue state: depth by state, oldest ages, one read per interval, one reader per cluster, and
// Redis going away and coming back, against real Redis servers.
import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { privateRedis } from './helpers/monitor.js';
import { type Otel, points, setupOtel, total } from './helpers/otel.js';
import { connection, queueName, sleep, until } from './helpers/redis.js';

const INTERVAL = 300;
// 'paused' is a count BullMQ keeps, though bullmq 6's JobType no longer lists it.
const ALL_STATES = ['waiting', 'active', 'delayed', 'prioritized', 'waiting-children', 'paused', 'failed', 'completed'] as never[];
let otel: Otel;
const closers: Array<() => Promise<unknown>> = [];
beforeAll(() => {
  otel = setupOtel({ queueStateInterval: INTERVAL, queueStateTimeout: 500 });
});
afterAll(async () => {
  for (const close of closers.reverse()) await close().catch(() => {});
  await otel.shutdown();
});

async function stateOf(name: string) {
  const m = await otel.collect();
  const counts = Object.fromEntries(
    points(m.get('queue.job.count'), { 'messaging.destination.name': name }).map((p) => [p.attributes['queue.job.state'], p.value]),
  );
  return {
    counts,
    oldest: points(m.get('queue.oldest.age'), { 'messaging.destination.name': name })[0]?.value,
    failedOldest: points(m.get('queue.failed.oldest.age'), { 'messaging.destination.name': name })[0]?.value,
    metrics: m,
  };
}

describe('depth by state', () => {
  it('reports exactly what BullMQ counts, for every state, and the oldest ages', async () => {
    const name = queueName('state');
    const queue = new otel.bullmq.Queue(name, { connection: connection() });
    closers.push(async () => {
      await queue.obliterate({ force: true });
      await queue.close();
    });
    let release!: () => void;
    const worker = new otel.bullmq.Worker(
      name,
      async (job) => {
        if (job.name === 'fail') throw new Error('dead letter');
        if (job.name === 'hold') await new Promise<void>((r) => (release = r));
      },
      { connection: connection(), autorun: false },
    );
    closers.push(() => worker.close());
    await queue.add('fail', {});
    await queue.add('done', {});
    void worker.run();
    await until(async () => (await queue.getJobCounts('failed', 'completed')).failed === 1 && (await queue.getJobCounts('completed')).completed === 1, 10_000, 'failed and completed');
    await queue.add('hold', {});
    await until(async () => (await queue.getJobCounts('active')).active === 1, 10_000, 'active job');
    await worker.pause(true); // the held job stays active; no new job starts
    const failedAt = Date.now();
    await queue.add('wait-1', {});
    await queue.add('wait-2', {});
    await queue.add('later', {}, { delay: 60_000 });
    await queue.add('urgent', {}, { priority: 1 });
    await sleep(1_000);

    await until(async () => (await stateOf(name)).counts.waiting === 2, 5_000, 'state read');
    const { counts, oldest, failedOldest } = await stateOf(name);
    const truth = await queue.getJobCounts(...ALL_STATES);
    expect(counts).toEqual(truth);
    expect(counts).toMatchObject({ waiting: 2, active: 1, delayed: 1, prioritized: 1, failed: 1, completed: 1 });
    // The oldest ready job was added about 1 s before this read (the interval adds up to 0.3 s).
    expect(oldest).toBeGreaterThan(0.8);
    expect(oldest).toBeLessThan(2.5);
    expect(failedOldest).toBeGreaterThanOrEqual((Date.now() - failedAt) / 1000 - 0.5);
    expect((await stateOf(name)).metrics.get('queue.job.count')?.descriptor.unit).toBe('{job}');

    try {
      // bullmq 5 moves the waiting jobs to the paused list; bullmq 6 keeps them in wait. Either
      // way the reported counts must match BullMQ's own within an interval or two of the pause.
      await queue.pause();
      const truthPaused = await queue.getJobCounts(...ALL_STATES);
      await expect.poll(async () => (await stateOf(name)).counts, { timeout: 5_000, interval: 50 }).toEqual(truthPaused);
    } finally {
      // Unset when BullMQ never called the processor (bullmq 5.0 does not start a job the
      // worker has been paused for since it fetched it).
      release?.();
    }
  });

  it('reports how long the longest-running job of each job name has run, from this process', async () => {
    const name = queueName('running');
    const queue = new otel.bullmq.Queue(name, { connection: connection() });
    let release!: () => void;
    const worker = new otel.bullmq.Worker(name, () => new Promise<void>((r) => (release = r)), { connection: connection() });
    closers.push(async () => {
      await worker.close();
      await queue.obliterate({ force: true });
      await queue.close();
    });
    await queue.add('stuck', {});
    const attrs = { 'messaging.destination.name': name, 'queue.job.name': 'stuck' };
    await until(async () => total((await otel.collect()).get('queue.job.active'), attrs) === 1, 10_000, 'start');
    await sleep(800);
    const running = total((await otel.collect()).get('queue.job.running.oldest'), attrs);
    expect(running).toBeGreaterThan(0.7);
    expect(running).toBeLessThan(3);
    release();
    await until(async () => total((await otel.collect()).get('queue.job.running.oldest'), attrs) === 0, 10_000, 'back to 0');
  });
});

describe('reads', () => {
  it('many collections within one interval cause one read', async () => {
    const name = queueName('debounce');
    // A server of its own: other clients' traffic on the shared one can break ioredis's MONITOR parser.
    const redis = await privateRedis();
    const conn = { host: redis.host, port: redis.port, maxRetriesPerRequest: null };
    const monitorClient = new Redis(conn);
    const monitor = await monitorClient.monitor();
    let reads = 0;
    monitor.on('monitor', (_t: string, args: string[]) => {
      // One read is one EVAL whose script GETs the lease once (MONITOR shows the commands a
      // script runs; the EVAL line itself, with a multi-line script, is not parsed reliably).
      if (String(args[0]).toLowerCase() === 'get' && String(args[1]) === `queue-otel:bull:${name}:state-lease`) reads++;
    });
    otel.instrumentation.setConfig({ queueStateInterval: 5_000 });
    const queue = new otel.bullmq.Queue(name, { connection: conn });
    try {
      await queue.add('x', {});
      await until(async () => (await stateOf(name)).counts.waiting !== undefined, 5_000, 'the first read');
      const first = (await stateOf(name)).counts.waiting;
      await queue.add('x', {});
      for (let i = 0; i < 20; i++) {
        await otel.collect();
        await sleep(50);
      }
      expect(reads).toBe(1);
      // Collections in between report the values of that one read, not a fresh count.
      expect((await stateOf(name)).counts.waiting).toBe(first);
    } finally {
      otel.instrumentation.setConfig({ queueStateInterval: INTERVAL, queueStateTimeout: 500 });
      monitor.disconnect();
      monitorClient.disconnect();
      await queue.close();
      await redis.stop();
    }
  });

  it('a collection reports a reading at most about one interval old, without waiting for a read', async () => {
    const name = queueName('fresh');
    const queue = new otel.bullmq.Queue(name, { connection: connection() });
    closers.push(async () => {
      await queue.obliterate({ force: true });
      await queue.close();
    });
    await queue.add('x', {});
    await until(async () => (await stateOf(name)).counts.waiting === 1, 5_000, 'first read');
    await queue.addBulk([{ name: 'x', data: {} }, { name: 'x', data: {} }]);
    // No collection in between: reads go on by themselves while a reader collects, so the one
    // collection after two intervals sees the new depth (not the depth of the previous collection).
    await sleep(INTERVAL * 3);
    expect((await stateOf(name)).counts.waiting).toBe(3);
  });

  it("the lease key is outside the queue's key space: obliterate() leaves nothing of the queue; closing it gives the lease up", async () => {
    const name = queueName('obliterate');
    const queue = new otel.bullmq.Queue(name, { connection: connection() });
    const redis = new Redis(connection());
    try {
      await queue.add('x', {});
      await until(async () => (await stateOf(name)).counts.waiting === 1, 5_000, 'a read');
      const lease = `queue-otel:bull:${name}:state-lease`;
      expect(await redis.exists(lease)).toBe(1);
      await queue.obliterate({ force: true });
      expect(await redis.keys(`bull:${name}:*`)).toEqual([]);
      await sleep(3 * INTERVAL); // reads go on: they write nothing under the queue's prefix
      expect(await redis.keys(`bull:${name}:*`)).toEqual([]);
      await queue.close();
      await until(async () => (await redis.exists(lease)) === 0, 5_000, 'the lease given up');
    } finally {
      redis.disconnect();
      await queue.close();
    }
  });

  it('one process of the cluster reports a queue; another takes over within about one interval and the lease margin when it dies', async () => {
    const name = queueName('leader');
    const fixture = fileURLToPath(new URL('./fixtures/state-reporter.mjs', import.meta.url));
    const other: ChildProcess = fork(fixture, [name, String(INTERVAL)], { stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
    const lines: Array<{ reporting: boolean }> = [];
    other.stdout!.on('data', (d: Buffer) => d.toString().split('\n').filter(Boolean).forEach((l) => lines.push(JSON.parse(l))));
    closers.push(async () => other.kill('SIGKILL'));
    await until(() => lines.some((l) => l.reporting), 15_000, 'the other process reporting');

    const queue = new otel.bullmq.Queue(name, { connection: connection() });
    closers.push(async () => {
      await queue.obliterate({ force: true });
      await queue.close();
    });
    await queue.add('y', {});
    for (let i = 0; i < 5; i++) {
      expect((await stateOf(name)).counts.waiting, 'not the leader: reports nothing').toBeUndefined();
      await sleep(INTERVAL);
    }
    other.kill('SIGKILL');
    const killedAt = Date.now();
    await until(async () => (await stateOf(name)).counts.waiting === 2, 10_000, 'takeover');
    // The lease: one interval plus the read timeout (0.5 s); the other process tries right after it
    // runs out, and the next collection (polled every 20 ms) shows it. Loose bound, for a loaded machine.
    expect(Date.now() - killedAt).toBeLessThan(INTERVAL + 500 + 2 * INTERVAL + 1_000);
  });
});

describe('Redis slow or gone', () => {
  it('collection returns at once with the job metrics; state is left out while Redis is gone and comes back after', async () => {
    let redis = await privateRedis();
    closers.push(() => redis.stop());
    // A read that hangs waits this long for Redis: a collection that waited for it would show it.
    otel.instrumentation.setConfig({ queueStateInterval: INTERVAL, queueStateTimeout: 5_000 });
    try {
      const name = queueName('gone');
      const conn = { host: redis.host, port: redis.port, maxRetriesPerRequest: null };
      const queue = new otel.bullmq.Queue(name, { connection: conn });
      let done = 0;
      const worker = new otel.bullmq.Worker(name, async () => 'ok', { connection: conn });
      worker.on('completed', () => done++);
      worker.on('error', () => {});
      queue.on('error', () => {});
      closers.push(async () => {
        await worker.close(true).catch(() => {});
        await queue.close().catch(() => {});
      });
      await queue.add('a', {});
      await until(() => done === 1, 10_000, 'a job');
      await until(async () => (await stateOf(name)).counts.completed === 1, 5_000, 'state');

      await redis.stop();
      await sleep(INTERVAL * 2);
      for (let i = 0; i < 5; i++) {
        const started = performance.now();
        const s = await stateOf(name);
        // The read in flight waits up to 5 s for Redis; the collection does not wait for it.
        expect(performance.now() - started).toBeLessThan(2_500);
        expect(total(s.metrics.get('messaging.client.consumed.messages'), { 'messaging.destination.name': name })).toBe(1);
        await sleep(INTERVAL);
      }
      await until(async () => (await stateOf(name)).counts.completed === undefined, 5_000, 'state left out');

      redis = await privateRedis(redis.port); // a new, empty server on the same port
      await until(async () => (await stateOf(name)).counts.completed === 0, 15_000, 'state back');
    } finally {
      otel.instrumentation.setConfig({ queueStateInterval: INTERVAL, queueStateTimeout: 500 });
    }
  });
});
