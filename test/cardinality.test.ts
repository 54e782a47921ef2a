// Cardinality bounded by construction (docs/metrics.md, "Cardinality"): hostile numbers of job names,
// error types and queues never take an instrument past the SDK's cardinality limit, the SDK's
// overflow set is never used, and every queue's totals stay exact. Driven through the seam the
// adapters use (core/seam.ts) with a real SDK: what is under test is the core's budgets, the same
// for every library; test/cardinality-and-sandbox.test.ts runs the name cap through real BullMQ.
import { diag, DiagLogLevel } from '@opentelemetry/api';
import { type MetricData, MeterProvider } from '@opentelemetry/sdk-metrics';
import { describe, expect, it } from 'vitest';
import { resolveConfig } from '../src/config.js';
import type { JobState, QueueStateReading } from '../src/core/seam.js';
import { QueueTelemetry } from '../src/core/telemetry.js';
import { histogram, points, TestReader, total } from './helpers/otel.js';

class Error0 extends Error {}

/** A core with a real MeterProvider whose reader is collected on demand. */
function core(limit: number | undefined, options: Record<string, unknown> = {}) {
  const reader = new TestReader();
  const provider = new MeterProvider({ readers: [reader] });
  const warnings: string[] = [];
  const logger = { error: () => {}, warn: (m: string) => warnings.push(m), info: () => {}, debug: () => {}, verbose: () => {} };
  const telemetry = new QueueTelemetry('bullmq', resolveConfig({ queueStateInterval: 60_000, queueStateLeader: false, ...options }), logger);
  telemetry.setMeter(provider.getMeter('queue-otel/test'), limit);
  telemetry.start();
  return {
    telemetry,
    warnings,
    async collect(): Promise<Map<string, MetricData>> {
      const resourceMetrics = await reader.observed();
      const byName = new Map<string, MetricData>();
      for (const scope of resourceMetrics.scopeMetrics) for (const m of scope.metrics) byName.set(m.descriptor.name, m);
      return byName;
    },
    async shutdown() {
      telemetry.disable();
      await provider.shutdown();
    },
  };
}

/** An error of class `Error<i>` (a distinct constructor name per i). */
function errorOf(i: number): Error {
  const Named = { [`Error${i}`]: class extends Error0 {} }[`Error${i}`] as new (m: string) => Error;
  return new Named(`failure ${i}`);
}

/** Runs one attempt of `name` on `queue` that ends as `outcome` (with an error of class `i` unless completed). */
function attempt(c: ReturnType<typeof core>, queue: string, name: string, outcome: 'completed' | 'retried' | 'failed', i = 0): void {
  const handle = c.telemetry.startAttempt(() => ({ queue, jobName: name, jobId: 'id', attempt: 1, readyAt: Date.now(), carrier: undefined, traced: false, job: {} }));
  if (handle === undefined) throw new Error('attempt not started');
  c.telemetry.endAttempt(handle, outcome === 'completed' ? { outcome, attemptsMade: 1 } : { outcome, error: errorOf(i), attemptsMade: 1 });
}

function expectUnderLimit(m: Map<string, MetricData>, limit: number): void {
  for (const metric of m.values()) {
    const sets = metric.dataPoints.length;
    expect(sets, `${metric.descriptor.name} has ${sets} attribute sets`).toBeLessThan(limit);
    for (const p of metric.dataPoints) expect(p.attributes['otel.metric.overflow'], `${metric.descriptor.name} overflowed`).toBeUndefined();
  }
}

describe('cardinality budgets', () => {
  it('one queue, 200 job names each failing with 30 error classes: under the limit, every attempt counted, outcomes exact', async () => {
    const c = core(undefined);
    try {
      const queue = 'hostile-names';
      const expected = { completed: 0, retried: 0, failed: 0 };
      for (let n = 0; n < 200; n++) {
        attempt(c, queue, `job-${n}`, 'completed');
        expected.completed++;
        for (let e = 0; e < 30; e++) {
          const outcome = e % 2 === 0 ? 'retried' : 'failed';
          attempt(c, queue, `job-${n}`, outcome, e);
          expected[outcome]++;
        }
      }
      const m = await c.collect();
      expectUnderLimit(m, 2000);
      const q = { 'messaging.destination.name': queue };
      expect(histogram(m.get('messaging.process.duration'), q).count).toBe(6200);
      for (const outcome of ['completed', 'retried', 'failed'] as const) {
        expect(histogram(m.get('messaging.process.duration'), { ...q, 'queue.job.outcome': outcome }).count, outcome).toBe(expected[outcome]);
      }
      expect(total(m.get('messaging.client.consumed.messages'), q)).toBe(6200);
      expect(histogram(m.get('queue.job.wait.duration'), q).count).toBe(6200);
      // Names past the cap and error types past theirs fold into _OTHER; 100 names and 20 types stay.
      const names = new Set(points(m.get('queue.job.busy.time'), q).map((p) => p.attributes['queue.job.name']));
      expect(names.size).toBe(101);
      const types = new Set(points(m.get('messaging.process.duration'), q).map((p) => p.attributes['error.type']).filter((t) => t !== undefined));
      expect(types.size).toBeLessThanOrEqual(21);
      expect(types.has('_OTHER')).toBe(true);
      expect(c.warnings.some((w) => w.includes('maxJobNamesPerQueue'))).toBe(true);
      expect(c.warnings.some((w) => w.includes('maxErrorTypesPerQueue'))).toBe(true);
    } finally {
      await c.shutdown();
    }
  });

  it('500 queues, each with 20 job names, every outcome and 5 error classes, and 8 states: under the limit, each queue exact', async () => {
    const c = core(undefined);
    try {
      const states: JobState[] = ['waiting', 'active', 'delayed', 'failed', 'prioritized', 'waiting-children', 'paused', 'completed'];
      const reading = (i: number): QueueStateReading => ({
        counts: Object.fromEntries(states.map((s, k) => [s, i + k])) as QueueStateReading['counts'],
        oldestReadyAt: Date.now() - 1000,
        oldestFailedAt: Date.now() - 2000,
      });
      for (let i = 0; i < 500; i++) {
        const queue = `queue-${i}`;
        c.telemetry.watchQueue(queue, () => ({ read: async () => reading(i) }));
        for (let n = 0; n < 20; n++) attempt(c, queue, `job-${n}`, (['completed', 'retried', 'failed'] as const)[n % 3], n % 5);
      }
      await new Promise((r) => setTimeout(r, 200)); // the first state reads, started by watchQueue
      const m = await c.collect();
      expectUnderLimit(m, 2000);
      for (let i = 0; i < 500; i++) {
        const q = { 'messaging.destination.name': `queue-${i}` };
        expect(histogram(m.get('messaging.process.duration'), q).count, `attempts of queue-${i}`).toBe(20);
        expect(total(m.get('messaging.client.consumed.messages'), q), `deliveries of queue-${i}`).toBe(20);
        const depth = states.reduce((sum, _s, k) => sum + i + k, 0);
        expect(total(m.get('queue.job.count'), q), `depth of queue-${i}`).toBe(depth);
        expect(points(m.get('queue.oldest.age'), q)).toHaveLength(1);
      }
      // The first queues keep their states; later ones fold some into state _OTHER.
      const first = points(m.get('queue.job.count'), { 'messaging.destination.name': 'queue-0' }).map((p) => p.attributes['queue.job.state']);
      expect(first.sort()).toEqual([...states].sort());
    } finally {
      await c.shutdown();
    }
  });

  it('respects a lower limit the SDK applies: 200 sets per instrument, 50 queues, totals exact', async () => {
    const c = core(200);
    try {
      for (let i = 0; i < 50; i++) for (let n = 0; n < 30; n++) attempt(c, `small-${i}`, `job-${n}`, n % 2 === 0 ? 'completed' : 'failed', n);
      const m = await c.collect();
      expectUnderLimit(m, 200);
      for (let i = 0; i < 50; i++) expect(histogram(m.get('messaging.process.duration'), { 'messaging.destination.name': `small-${i}` }).count).toBe(30);
    } finally {
      await c.shutdown();
    }
  });

  it('queues past maxQueues are reported as _OTHER, with their totals', async () => {
    const c = core(undefined, { maxQueues: 3 });
    try {
      for (let i = 0; i < 5; i++) attempt(c, `q-${i}`, 'job', 'completed');
      const m = await c.collect();
      const queues = new Set(points(m.get('messaging.process.duration')).map((p) => p.attributes['messaging.destination.name']));
      expect([...queues].sort()).toEqual(['_OTHER', 'q-0', 'q-1', 'q-2']);
      expect(histogram(m.get('messaging.process.duration'), { 'messaging.destination.name': '_OTHER' }).count).toBe(2);
      expect(c.warnings.some((w) => w.includes('maxQueues'))).toBe(true);
    } finally {
      await c.shutdown();
    }
  });

  it('a 1 MiB job name, queue name and error class are _OTHER on metrics and keep no copy in memory', async () => {
    const c = core(undefined);
    try {
      const huge = 'x'.repeat(1 << 20);
      attempt(c, 'long-names', huge, 'completed');
      attempt(c, huge, 'job', 'completed');
      const handle = c.telemetry.startAttempt(() => ({ queue: 'long-names', jobName: 'job', jobId: undefined, attempt: 1, readyAt: undefined, carrier: undefined, traced: false, job: {} }));
      const error = new Error('boom');
      error.name = huge;
      c.telemetry.endAttempt(handle!, { outcome: 'failed', error, attemptsMade: 1 });
      const m = await c.collect();
      for (const metric of m.values()) {
        for (const p of metric.dataPoints) for (const v of Object.values(p.attributes)) expect(String(v).length).toBeLessThanOrEqual(256);
      }
      expect(histogram(m.get('messaging.process.duration'), { 'messaging.destination.name': 'long-names', 'queue.job.name': '_OTHER' }).count).toBe(1);
      expect(histogram(m.get('messaging.process.duration'), { 'messaging.destination.name': '_OTHER' }).count).toBe(1);
      expect(histogram(m.get('messaging.process.duration'), { 'messaging.destination.name': 'long-names', 'error.type': '_OTHER' }).count).toBe(1);
    } finally {
      await c.shutdown();
    }
  });
});

// Keep diag quiet in this file.
diag.setLogger({ error: () => {}, warn: () => {}, info: () => {}, debug: () => {}, verbose: () => {} }, DiagLogLevel.NONE);
