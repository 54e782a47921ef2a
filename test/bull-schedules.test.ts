// Bull repeatable jobs that start late: `queue.schedule.lag` by the repeat key Bull stores with
// each run (`opts.repeat.key`), from the occurrence it stores (`opts.prevMillis`); no missed runs
// (Bull does not tell them). A run whose processor starts D ms after it was due shows a lag of at
// least D, whatever the load of the machine.
import { createRequire } from 'node:module';
import { afterAll, describe, expect, it } from 'vitest';
import { BullInstrumentation } from '../src/index.js';
import { histogram, points } from './helpers/otel.js';
import { connection, queueName, sleep, until } from './helpers/redis.js';
import { setupTelemetry } from './helpers/sdk.js';

const require = createRequire(import.meta.url);
const otel = setupTelemetry(new BullInstrumentation({ queueState: false }));
const Queue = require('bull') as typeof import('bull');
const redis = { host: connection().host, port: connection().port };
const closers: Array<() => Promise<unknown>> = [];
afterAll(async () => {
  for (const close of closers.reverse()) await close().catch(() => {});
  await otel.shutdown();
});

const LATE_MS = 2500;
const byStart = (a: { startTime: [number, number] }, b: { startTime: [number, number] }) => a.startTime[0] - b.startTime[0] || a.startTime[1] - b.startTime[1];

describe('schedule lag (Bull)', () => {
  it('a repeatable job whose processor starts late: the first run shows the delay, later runs less; by repeat key', async () => {
    const name = queueName('bull-sched');
    const queue = new Queue(name, { redis });
    closers.push(async () => {
      await queue.obliterate({ force: true });
      await queue.close();
    });
    // Bull's first run of `every` is due at the next whole interval: at most 1 s after the call.
    await queue.add('report', { x: 1 }, { repeat: { every: 1000 } });
    await sleep(LATE_MS);
    const seen: Array<{ key: string; due: number; attempt: number }> = [];
    void queue.process('report', async (job) => {
      seen.push({ key: String(job.opts.repeat?.key), due: Number((job.opts as { prevMillis?: number }).prevMillis), attempt: job.attemptsMade });
    });
    const spans = () => otel.spans.getFinishedSpans().filter((s) => s.name === `process ${name}`).sort(byStart);
    await until(() => spans().length >= 3, 20_000, 'three runs');
    await queue.pause(true);
    const runs = spans();
    const lags = runs.map((s) => s.attributes['queue.schedule.lag'] as number);
    console.log(`schedules: Bull repeatable job, processor started ${LATE_MS} ms late: lags ${lags.map((l) => l.toFixed(3)).join(', ')} s (key "${seen[0]!.key}")`);
    for (const span of runs) expect(span.attributes['queue.schedule.name']).toBe(seen[0]!.key);
    expect(seen[0]!.key).toContain('report');
    expect(lags[0]).toBeGreaterThanOrEqual((LATE_MS - 1000) / 1000);
    expect(Math.min(...lags.slice(1))).toBeLessThan((LATE_MS - 1000) / 1000);
    const m = await otel.collect();
    const lag = histogram(m.get('queue.schedule.lag'), { 'messaging.system': 'bull', 'messaging.destination.name': name, 'queue.schedule.name': seen[0]!.key });
    expect(lag.count).toBe(runs.length);
    expect(lag.sum).toBeCloseTo(lags.reduce((a, b) => a + b, 0), 6);
    expect(points(m.get('queue.schedule.missed'), { 'messaging.destination.name': name })).toEqual([]);
  });
});
