// Scheduled runs that start late (BullMQ job schedulers and, in BullMQ 5, repeatable jobs):
// `queue.schedule.lag` by `queue.schedule.name` from what BullMQ stores with each run (its id
// `repeat:<key>:<millis>`), on the run's first attempt only; and no `queue.schedule.missed`, which
// BullMQ cannot tell. Lag is a timing measure: the bounds here hold on a loaded machine (a run
// whose worker starts D ms after it was due shows a lag of at least D, whatever the load).
import { createRequire } from 'node:module';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { histogram, type Otel, points, setupOtel } from './helpers/otel.js';
import { connection, queueName, sleep, until } from './helpers/redis.js';

let otel: Otel;
const closers: Array<() => Promise<unknown>> = [];
beforeAll(() => {
  otel = setupOtel({ queueState: false });
});
afterAll(async () => {
  for (const close of closers.reverse()) await close().catch(() => {});
  await otel.shutdown();
});

function track<T extends { close(): Promise<unknown> }>(object: T, queue?: { obliterate(o: object): Promise<unknown> }): T {
  closers.push(async () => {
    await object.close();
    await queue?.obliterate({ force: true }).catch(() => {});
  });
  return object;
}

const byStart = (a: { startTime: [number, number] }, b: { startTime: [number, number] }) => a.startTime[0] - b.startTime[0] || a.startTime[1] - b.startTime[1];
const processSpans = (queue: string) => otel.spans.getFinishedSpans().filter((s) => s.name === `process ${queue}`).sort(byStart);
const major = Number((createRequire(import.meta.url)('bullmq/package.json') as { version: string }).version.split('.')[0]);

/** How long the worker is kept from starting after the first run was due. */
const LATE_MS = 2500;

describe('schedule lag (BullMQ)', () => {
  it('a job scheduler whose worker starts late: the first run shows a lag of at least the delay, later runs less; by scheduler id', async () => {
    const { Queue, Worker } = otel.bullmq;
    const name = queueName('sched-late');
    const queue = track(new Queue(name, { connection: connection() }));
    // `every` schedulers run their first occurrence at once: it is due now, and nobody takes it.
    const dueBefore = Date.now();
    await queue.upsertJobScheduler('nightly-billing', { every: 1000 }, { name: 'billing-run', data: {} });
    await sleep(LATE_MS);
    const ids: string[] = [];
    const worker = track(new Worker(name, async (job) => void ids.push(String(job.id)), { connection: connection() }), queue);
    await until(() => processSpans(name).length >= 4, 20_000, 'four runs');
    await worker.close();
    const spans = processSpans(name);
    const lags = spans.map((s) => s.attributes['queue.schedule.lag'] as number);
    console.log(`schedules: BullMQ job scheduler, worker started ${LATE_MS} ms late: lags ${lags.map((l) => l.toFixed(3)).join(', ')} s`);
    for (const span of spans) expect(span.attributes['queue.schedule.name']).toBe('nightly-billing');
    expect(lags[0]).toBeGreaterThanOrEqual(LATE_MS / 1000);
    // The first run's id names the time it was due: no later than the call that created it.
    const due = Number(ids[0]!.slice(ids[0]!.lastIndexOf(':') + 1));
    expect(due).toBeGreaterThanOrEqual(dueBefore);
    expect(Math.min(...lags.slice(1))).toBeLessThan(LATE_MS / 1000);
    const m = await otel.collect();
    const attrs = { 'messaging.system': 'bullmq', 'messaging.destination.name': name, 'queue.schedule.name': 'nightly-billing' };
    const lag = histogram(m.get('queue.schedule.lag'), attrs);
    expect(lag.count).toBe(spans.length);
    expect(lag.max).toBeGreaterThanOrEqual(LATE_MS / 1000);
    expect(lag.sum).toBeCloseTo(lags.reduce((a, b) => a + b, 0), 6);
    // BullMQ does not tell missed runs: it schedules the next one from the time a run starts.
    expect(points(m.get('queue.schedule.missed'), { 'messaging.destination.name': name })).toEqual([]);
  });

  it('a retried run records its lag once, on its first attempt; a job that is not scheduled has none', async () => {
    const { Queue, Worker } = otel.bullmq;
    const name = queueName('sched-retry');
    const queue = track(new Queue(name, { connection: connection() }));
    const attempts = new Map<string, number>();
    const worker = track(
      new Worker(
        name,
        async (job) => {
          const n = (attempts.get(String(job.id)) ?? 0) + 1;
          attempts.set(String(job.id), n);
          if (job.repeatJobKey !== undefined && n === 1) throw new Error('first attempt fails');
          return 'ok';
        },
        { connection: connection() },
      ),
      queue,
    );
    await queue.add('plain', {});
    await queue.upsertJobScheduler('hourly-sync', { every: 3_600_000 }, { name: 'sync', opts: { attempts: 2 } });
    await until(() => processSpans(name).length >= 3, 15_000, 'two attempts of the run and the plain job');
    await worker.close();
    await queue.removeJobScheduler('hourly-sync');
    const spans = processSpans(name);
    const runs = spans.filter((s) => s.attributes['queue.job.name'] === 'sync');
    expect(runs.map((s) => s.attributes['queue.job.attempt'])).toEqual([1, 2]);
    expect(runs[0]!.attributes['queue.schedule.name']).toBe('hourly-sync');
    expect(typeof runs[0]!.attributes['queue.schedule.lag']).toBe('number');
    expect(runs[1]!.attributes['queue.schedule.lag']).toBeUndefined();
    const plain = spans.find((s) => s.attributes['queue.job.name'] === 'plain')!;
    expect(plain.attributes['queue.schedule.name']).toBeUndefined();
    expect(plain.attributes['queue.schedule.lag']).toBeUndefined();
    const m = await otel.collect();
    expect(histogram(m.get('queue.schedule.lag'), { 'messaging.destination.name': name }).count).toBe(1);
  });

  it.skipIf(major >= 6)('a repeatable job (opts.repeat, BullMQ 5): lag by its repeat key', async () => {
    const { Queue, Worker } = otel.bullmq;
    const name = queueName('sched-legacy');
    const queue = track(new Queue(name, { connection: connection() }));
    // The first run is due at the next whole second after the call: at most 1 s after it.
    // `repeat` is gone from BullMQ 6's types (this test runs on BullMQ 5 only).
    await queue.add('legacy-tick', {}, { repeat: { every: 1000 } } as unknown as import('bullmq').JobsOptions);
    await sleep(LATE_MS);
    const keys: string[] = [];
    const worker = track(new Worker(name, async (job) => void keys.push(String(job.repeatJobKey)), { connection: connection() }), queue);
    await until(() => processSpans(name).length >= 2, 20_000, 'two runs');
    await worker.close();
    const spans = processSpans(name);
    expect(spans[0]!.attributes['queue.schedule.name']).toBe(keys[0]);
    expect(spans[0]!.attributes['queue.schedule.lag']).toBeGreaterThanOrEqual((LATE_MS - 1000) / 1000);
    const m = await otel.collect();
    expect(histogram(m.get('queue.schedule.lag'), { 'messaging.destination.name': name, 'queue.schedule.name': keys[0] }).count).toBe(spans.length);
  });
});
