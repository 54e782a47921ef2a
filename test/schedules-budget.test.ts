// The core's side of scheduled runs, the same for every library (driven through the seam the
// adapters use, core/seam.ts, with a real SDK): schedule names are capped per queue like job names
// and held within the cardinality budget, with each queue's totals exact; facts that name no
// schedule or no time record nothing; a run "before" it was due (clock skew) has a lag of 0.
import { type MetricData, MeterProvider } from '@opentelemetry/sdk-metrics';
import { describe, expect, it } from 'vitest';
import { resolveConfig } from '../src/config.js';
import type { ScheduleFacts } from '../src/core/seam.js';
import { QueueTelemetry } from '../src/core/telemetry.js';
import { histogram, points, TestReader, total } from './helpers/otel.js';

function core(limit: number | undefined, options: Record<string, unknown> = {}) {
  const reader = new TestReader();
  const provider = new MeterProvider({ readers: [reader] });
  const warnings: string[] = [];
  const errors: string[] = [];
  const logger = { error: (m: string) => errors.push(m), warn: (m: string) => warnings.push(m), info: () => {}, debug: () => {}, verbose: () => {} };
  const telemetry = new QueueTelemetry('bullmq', resolveConfig({ queueState: false, ...options }), logger);
  telemetry.setMeter(provider.getMeter('queue-otel/test'), limit);
  return {
    telemetry,
    warnings,
    errors,
    async collect(): Promise<Map<string, MetricData>> {
      const byName = new Map<string, MetricData>();
      for (const scope of (await reader.observed()).scopeMetrics) for (const m of scope.metrics) byName.set(m.descriptor.name, m);
      return byName;
    },
    shutdown: () => provider.shutdown(),
  };
}

/** One run of a schedule that starts now, `lateS` seconds after it was due. */
function run(c: ReturnType<typeof core>, queue: string, schedule: ScheduleFacts | undefined): void {
  const handle = c.telemetry.startAttempt(() => ({ queue, jobName: 'job', jobId: '1', attempt: 1, readyAt: undefined, carrier: undefined, traced: false, job: {}, schedule }));
  if (handle === undefined) throw new Error('attempt not started');
  c.telemetry.endAttempt(handle, { outcome: 'completed', attemptsMade: 1 });
}

const due = (lateS: number) => Date.now() - lateS * 1000;

describe('schedule budgets', () => {
  it('past maxJobNamesPerQueue, further schedules of a queue are _OTHER; every run and missed run counted', async () => {
    const c = core(undefined, { maxJobNamesPerQueue: 3 });
    for (let i = 0; i < 10; i++) {
      run(c, 'q', { name: `schedule-${i}`, scheduledAt: due(i) });
      c.telemetry.scheduleMissed('q', `schedule-${i}`);
    }
    const m = await c.collect();
    const lag = points(m.get('queue.schedule.lag'), { 'messaging.destination.name': 'q' });
    expect(lag.map((p) => p.attributes['queue.schedule.name']).sort()).toEqual(['_OTHER', 'schedule-0', 'schedule-1', 'schedule-2']);
    expect(histogram(m.get('queue.schedule.lag'), { 'messaging.destination.name': 'q' }).count).toBe(10);
    expect(histogram(m.get('queue.schedule.lag'), { 'queue.schedule.name': '_OTHER' }).count).toBe(7);
    expect(total(m.get('queue.schedule.missed'), { 'messaging.destination.name': 'q' })).toBe(10);
    expect(c.warnings.some((w) => w.includes('more than 3 schedules'))).toBe(true);
    await c.shutdown();
  });

  it('within the cardinality limit: 300 queues with 20 schedules each never reach it, and each queue is exact', async () => {
    const limit = 500;
    const c = core(limit, { maxQueues: 1000 });
    for (let q = 0; q < 300; q++) for (let s = 0; s < 20; s++) run(c, `queue-${q}`, { name: `s-${s}`, scheduledAt: due(1) });
    const m = await c.collect();
    const sets = m.get('queue.schedule.lag')!.dataPoints;
    expect(sets.length).toBeLessThan(limit);
    expect(sets.some((p) => 'otel.metric.overflow' in p.attributes)).toBe(false);
    const counted = new Map<string, number>();
    for (const p of points(m.get('queue.schedule.lag'))) {
      const queue = String(p.attributes['messaging.destination.name']);
      counted.set(queue, (counted.get(queue) ?? 0) + (p.value as unknown as { count: number }).count);
    }
    // Queues past the queue budget are folded into the _OTHER queue, whose total is theirs.
    const named = [...counted].filter(([q]) => q !== '_OTHER');
    for (const [, count] of named) expect(count).toBe(20);
    expect((counted.get('_OTHER') ?? 0) + named.length * 20).toBe(300 * 20);
    await c.shutdown();
  });

  it('a schedule name longer than maxNameLength is _OTHER; facts without a name or a time record nothing; skew reads 0', async () => {
    const c = core(undefined, { maxNameLength: 16 });
    run(c, 'q', { name: 'x'.repeat(17), scheduledAt: due(2) });
    for (const bad of [{ name: '', scheduledAt: due(1) }, { name: 'n', scheduledAt: Number.NaN }, { name: 7, scheduledAt: due(1) }, null, 'nightly']) {
      run(c, 'bad', bad as unknown as ScheduleFacts);
    }
    run(c, 'skew', { name: 'ahead', scheduledAt: Date.now() + 60_000 });
    c.telemetry.scheduleRun('forwarded', { name: 'pg', scheduledAt: due(90) });
    c.telemetry.scheduleRun('forwarded', { name: 'pg', scheduledAt: 'yesterday' } as unknown as ScheduleFacts);
    c.telemetry.scheduleMissed('forwarded', '');
    const m = await c.collect();
    expect(histogram(m.get('queue.schedule.lag'), { 'messaging.destination.name': 'q', 'queue.schedule.name': '_OTHER' }).count).toBe(1);
    expect(points(m.get('queue.schedule.lag'), { 'messaging.destination.name': 'bad' })).toEqual([]);
    expect(histogram(m.get('queue.schedule.lag'), { 'queue.schedule.name': 'ahead' })).toMatchObject({ count: 1, sum: 0 });
    const forwarded = histogram(m.get('queue.schedule.lag'), { 'messaging.destination.name': 'forwarded' });
    expect(forwarded.count).toBe(1);
    expect(forwarded.sum).toBeGreaterThanOrEqual(90);
    expect(points(m.get('queue.schedule.missed'))).toEqual([]);
    // The jobs with malformed facts still ran, instrumented.
    expect(histogram(m.get('messaging.process.duration'), { 'messaging.destination.name': 'bad' }).count).toBe(5);
    expect(c.errors).toEqual([]);
    await c.shutdown();
  });
});
