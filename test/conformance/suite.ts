// The conformance suite: the same jobs, the same expected metrics and spans, for every queue
// library. A library's test file calls runConformance(driver) once; what a library cannot tell
// (job names, a retry's ready time, some states) is declared in its driver's features, and the
// suite then checks that queue-otel reports nothing for it rather than an invented value.
import { type Attributes, type Meter, type MeterProvider, SpanKind, SpanStatusCode, type TracerProvider, trace } from '@opentelemetry/api';
import type { MetricData } from '@opentelemetry/sdk-metrics';
import type { ReadableSpan } from '@opentelemetry/sdk-trace';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { histogram, points, total } from '../helpers/otel.js';
import { sleep, until } from '../helpers/redis.js';
import type { Driver, Harness, Processor, TestQueue } from './driver.js';

const SLOW = 30_000;

/** Every job name the suite adds (a library that must know its task names up front registers these). */
export const JOB_NAMES = ['resize', 'sync', 'charge', 'later', 'email', 'report', 'fail', 'wait'] as const;

export function runConformance(driver: Driver): void {
  const { features, system } = driver;
  const native = features.nativeTelemetry;
  let h: Harness;
  const queues: TestQueue[] = [];

  describe(`conformance: ${system}`, () => {
    beforeAll(async () => {
      // Not faster than this: each read of a Redis queue is an EVAL on the shared Redis, whose traffic
      // other test files watch with MONITOR.
      h = await driver.start({ queueStateInterval: 1_000, queueStateTimeout: 2_000 });
    }, 60_000);
    afterAll(async () => {
      for (const q of queues.reverse()) await q.close().catch((e) => console.error('close failed', e));
      await h?.shutdown();
    }, 60_000);

    async function queue(label: string, processor: Processor, concurrency = 1): Promise<TestQueue> {
      const q = await h.queue(label, processor, { concurrency });
      queues.push(q);
      return q;
    }
    const processSpans = (q: TestQueue) =>
      h.otel.spans
        .getFinishedSpans()
        .filter((s) => s.name === `process ${q.destination}` && s.kind === SpanKind.CONSUMER)
        .sort((a, b) => Number(a.attributes['queue.job.attempt']) - Number(b.attributes['queue.job.attempt']));
    const sendSpans = (q: TestQueue) => h.otel.spans.getFinishedSpans().filter((s) => s.kind === SpanKind.PRODUCER && s.attributes['messaging.destination.name'] === q.destination);
    const series = (q: TestQueue, name: string): Attributes => ({
      'messaging.system': system,
      'messaging.destination.name': q.destination,
      ...(features.jobNames ? { 'queue.job.name': name } : {}),
    });
    /** The attempts that ended, by outcome, as the metrics tell (or, with native telemetry, the spans). */
    async function outcomes(q: TestQueue, m: Map<string, MetricData>): Promise<Record<string, number>> {
      const counts: Record<string, number> = { completed: 0, retried: 0, failed: 0 };
      if (native) {
        for (const span of processSpans(q)) counts[String(span.attributes['queue.job.outcome'])]++;
      } else {
        for (const outcome of Object.keys(counts)) {
          counts[outcome] = histogram(m.get('messaging.process.duration'), { 'messaging.destination.name': q.destination, 'queue.job.outcome': outcome }).count;
        }
      }
      return counts;
    }

    it('a completing job: a CONSUMER span the processor runs in, outcome completed, every per-job metric', async () => {
      let inside: string | undefined;
      const result = { ok: true };
      const q = await queue('complete', async () => {
        const child = h.otel.tracerProvider.getTracer('user').startSpan('user work');
        inside = trace.getActiveSpan()?.spanContext().spanId;
        child.end();
        return result;
      }, 3);
      const id = await q.add({ name: 'resize', data: { a: 1 } });
      await q.work();
      await until(() => processSpans(q).length === 1, SLOW, 'process span');
      const [span] = processSpans(q);
      expect(span!.attributes).toMatchObject({
        'messaging.system': system,
        'messaging.destination.name': q.destination,
        'messaging.operation.name': 'process',
        'queue.job.attempt': 1,
        'queue.job.outcome': 'completed',
      });
      if (id !== undefined) expect(span!.attributes['messaging.message.id']).toBe(id);
      if (features.jobNames) expect(span!.attributes['queue.job.name']).toBe('resize');
      else expect(span!.attributes['queue.job.name']).toBeUndefined();
      expect(span!.attributes['queue.job.wait.duration']).toBeGreaterThanOrEqual(0);
      expect(span!.status.code).toBe(SpanStatusCode.UNSET);
      expect(inside).toBe(span!.spanContext().spanId);
      const child = h.otel.spans.getFinishedSpans().find((s) => s.name === 'user work' && s.parentSpanContext?.spanId === span!.spanContext().spanId);
      expect(child, 'spans the processor starts are children of the process span').toBeDefined();

      let m = await h.otel.collect();
      const attrs = series(q, 'resize');
      await until(async () => total((m = await h.otel.collect()).get('queue.job.active'), attrs) === 0, SLOW, 'active back to 0');
      expect(await outcomes(q, m)).toEqual({ completed: 1, retried: 0, failed: 0 });
      if (native) {
        expect(m.get('messaging.process.duration'), 'left to the library').toBeUndefined();
        expect(m.get('messaging.client.consumed.messages'), 'left to the library').toBeUndefined();
        const theirs = await h.otel.collectScope(native.scope);
        expect(total(theirs.get('messaging.client.consumed.messages'), { 'messaging.destination.name': q.destination })).toBe(1);
        expect(histogram(theirs.get('messaging.process.duration'), { 'messaging.destination.name': q.destination }).count).toBe(1);
      } else {
        expect(histogram(m.get('messaging.process.duration'), { ...attrs, 'queue.job.outcome': 'completed' }).count).toBe(1);
      }
      expect(histogram(m.get('queue.job.attempts'), { ...attrs, 'queue.job.outcome': 'completed' })).toMatchObject({ count: 1, sum: 1 });
      expect(histogram(m.get('queue.job.wait.duration'), attrs).count).toBe(1);
      expect(total(m.get('queue.job.busy.time'), attrs)).toBeGreaterThan(0);
      expect(total(m.get('queue.worker.concurrency'), { 'messaging.destination.name': q.destination })).toBe(3);
      expect(points(m.get('queue.job.cpu.time'), attrs)).toHaveLength(1);
      expect(histogram(m.get('queue.job.memory.peak'), attrs).count).toBe(1);
      expect(typeof span!.attributes['queue.job.cpu.time']).toBe('number');
      for (const metric of m.values()) {
        for (const p of metric.dataPoints) {
          if (id !== undefined) expect(Object.values(p.attributes)).not.toContain(id);
          if (!features.jobNames) expect(p.attributes['queue.job.name']).toBeUndefined();
        }
      }
    }, 60_000);

    it('a job retried once then completed: outcomes retried then completed, 2 attempts', async () => {
      let calls = 0;
      const q = await queue('flaky', async () => {
        calls++;
        if (calls === 1) throw new TypeError('transient');
        return 'ok';
      });
      await q.add({ name: 'sync', data: {}, attempts: 3 });
      await q.work();
      await until(() => processSpans(q).length === 2, SLOW, 'two attempts');
      const spans = processSpans(q);
      expect(spans.map((s) => s.attributes['queue.job.outcome'])).toEqual(['retried', 'completed']);
      expect(spans.map((s) => s.attributes['queue.job.attempt'])).toEqual([1, 2]);
      expect(spans[0]!.attributes['error.type']).toBe('TypeError');
      const attrs = series(q, 'sync');
      const m = await h.otel.collect();
      expect(await outcomes(q, m)).toEqual({ completed: 1, retried: 1, failed: 0 });
      if (!native) expect(histogram(m.get('messaging.process.duration'), { ...attrs, 'queue.job.outcome': 'retried', 'error.type': 'TypeError' }).count).toBe(1);
      expect(histogram(m.get('queue.job.attempts'), { ...attrs, 'queue.job.outcome': 'completed' })).toMatchObject({ count: 1, sum: 2 });
      // A retry's ready time is stored by some libraries only; elsewhere no wait is invented for it.
      expect(histogram(m.get('queue.job.wait.duration'), attrs).count).toBe(features.retryWaitTime ? 2 : 1);
      if (!features.retryWaitTime) expect(spans[1]!.attributes['queue.job.wait.duration']).toBeUndefined();
    }, 60_000);

    it('a job that finally fails: ERROR spans with the exception, outcomes retried then failed', async () => {
      class PaymentDeclined extends Error {}
      let calls = 0;
      const q = await queue('fail', async () => {
        calls++;
        throw new PaymentDeclined(`declined #${calls}`);
      });
      await q.add({ name: 'charge', data: {}, attempts: 2 });
      await q.work();
      await until(() => processSpans(q).length === 2, SLOW, 'two attempts');
      const spans = processSpans(q);
      expect(spans.map((s) => s.attributes['queue.job.outcome'])).toEqual(['retried', 'failed']);
      for (const span of spans) {
        expect(span.status.code).toBe(SpanStatusCode.ERROR);
        expect(span.attributes['error.type']).toBe('PaymentDeclined');
        expect(span.events.find((e) => e.name === 'exception')?.attributes?.['exception.message']).toMatch(/^declined #/);
      }
      const attrs = series(q, 'charge');
      const m = await h.otel.collect();
      expect(await outcomes(q, m)).toEqual({ completed: 0, retried: 1, failed: 1 });
      if (!native) expect(histogram(m.get('messaging.process.duration'), { ...attrs, 'queue.job.outcome': 'failed', 'error.type': 'PaymentDeclined' }).count).toBe(1);
      expect(histogram(m.get('queue.job.attempts'), { ...attrs, 'queue.job.outcome': 'failed' })).toMatchObject({ count: 1, sum: 2 });
      expect(histogram(m.get('queue.job.attempts'), { ...attrs, 'queue.job.outcome': 'completed' }).count).toBe(0);
    }, 60_000);

    it('a delayed job waits from when it became due, not from when it was added', async () => {
      let startedAt = 0;
      const q = await queue('delayed', async () => {
        startedAt = Date.now();
      });
      await q.work();
      const addedAt = Date.now();
      await q.add({ name: 'later', data: {}, delayMs: 2_000 });
      await until(() => startedAt > 0, SLOW, 'delayed job');
      expect(startedAt - addedAt).toBeGreaterThanOrEqual(1_900);
      await until(() => processSpans(q).length === 1, SLOW, 'span');
      const wait = histogram((await h.otel.collect()).get('queue.job.wait.duration'), series(q, 'later'));
      expect(wait.count).toBe(1);
      expect(wait.sum).toBeGreaterThanOrEqual(0);
      // The library's promotion of due jobs (its polling) takes some time; far less than the delay.
      expect(wait.sum).toBeLessThan(1.5);
    }, 60_000);

    it('a producer add makes a PRODUCER span whose context reaches the consumer where the library can carry it, and the data the processor sees is unchanged', async () => {
      const seen: unknown[] = [];
      const q = await queue('propagate', async (job) => {
        seen.push(job.data);
      });
      const data = { to: 'someone', list: [1, 2] };
      const id = await q.add({ name: 'email', data });
      await q.work();
      await until(() => processSpans(q).length === 1, SLOW, 'process span');
      expect(seen).toEqual([data]);
      const [send] = sendSpans(q);
      expect(send, 'a send span').toBeDefined();
      expect(send!.attributes).toMatchObject({ 'messaging.system': system, 'messaging.operation.type': 'send' });
      if (id !== undefined && !native) expect(send!.attributes['messaging.message.id']).toBe(id);
      const [process] = processSpans(q);
      const linked = process!.links.some((l) => l.context.spanId === send!.spanContext().spanId);
      const parented = process!.parentSpanContext?.spanId === send!.spanContext().spanId;
      if (features.propagation) expect(linked || parented, 'the process span links to (or is a child of) the send span').toBe(true);
      else expect(linked || parented, 'no link is invented where no context travels').toBe(false);
      const m = native ? await h.otel.collectScope(native.scope) : await h.otel.collect();
      expect(total(m.get('messaging.client.sent.messages'), { 'messaging.destination.name': q.destination })).toBe(1);
      expect(histogram(m.get('messaging.client.operation.duration'), { 'messaging.destination.name': q.destination, 'messaging.operation.name': 'send' }).count).toBeGreaterThanOrEqual(1);
      if (native) expect((await h.otel.collect()).get('messaging.client.sent.messages'), 'left to the library').toBeUndefined();
    }, 60_000);

    it('a long job: busy time rises at each collection while it runs and equals its run time when it ends', async () => {
      let release!: () => void;
      const q = await queue('long', () => new Promise<void>((r) => (release = r)));
      await q.add({ name: 'report', data: {} });
      await q.work();
      const attrs = series(q, 'report');
      await until(async () => total((await h.otel.collect()).get('queue.job.active'), attrs) === 1, SLOW, 'job start');
      const startedAt = performance.now();
      const readings: number[] = [];
      for (let i = 0; i < 3; i++) {
        await sleep(400);
        const m = await h.otel.collect();
        readings.push(total(m.get('queue.job.busy.time'), attrs));
        expect(total(m.get('queue.job.active'), attrs)).toBe(1);
        expect(total(m.get('queue.job.running.oldest'), attrs)).toBeGreaterThan(0.3 * (i + 1));
      }
      expect(readings[1]! - readings[0]!).toBeGreaterThan(0.3);
      expect(readings[2]! - readings[1]!).toBeGreaterThan(0.3);
      expect(readings[1]! - readings[0]!).toBeLessThan(1.5);
      release();
      const releasedAt = performance.now();
      await until(async () => total((await h.otel.collect()).get('queue.job.active'), attrs) === 0, SLOW, 'job end');
      const m = await h.otel.collect();
      const busy = total(m.get('queue.job.busy.time'), attrs);
      expect(busy).toBeGreaterThanOrEqual(readings[2]!);
      await until(() => processSpans(q).length === 1, SLOW, 'process span');
      const [span] = processSpans(q);
      const spanS = span!.duration[0] + span!.duration[1] / 1e9;
      if (native) {
        // The library's span also covers its fetch and its completion write; busy time is the handler's.
        expect(busy).toBeLessThanOrEqual(spanS);
      } else {
        // Busy time of an ended job is its attempt's run time (its duration histogram): within 5 ms.
        const duration = histogram(m.get('messaging.process.duration'), attrs).sum;
        expect(Math.abs(busy - duration)).toBeLessThan(0.005);
        expect(Math.abs(busy - spanS)).toBeLessThan(0.05); // the span is timed by the SDK's clock calls
      }
      expect(busy).toBeGreaterThan((releasedAt - startedAt) / 1000 - 0.1);
      expect(total(m.get('queue.job.running.oldest'), attrs)).toBe(0);
    }, 60_000);

    it('a tracer and a meter that throw change nothing for the jobs: same results, same retries', async () => {
      const throwingTracerProvider = {
        getTracer: () => ({
          startSpan: () => {
            throw new Error('tracer down');
          },
          startActiveSpan: () => {
            throw new Error('tracer down');
          },
        }),
      } as unknown as TracerProvider;
      const throwingMeter = new Proxy({}, { get: () => () => { throw new Error('meter down'); } }) as Meter;
      h.otel.instrumentation.setTracerProvider(throwingTracerProvider);
      h.otel.instrumentation.setMeterProvider({ getMeter: () => throwingMeter } as MeterProvider);
      try {
        const seen: string[] = [];
        const q = await queue('faults', async (job) => {
          const data = job.data as { fails?: boolean };
          seen.push(data.fails ? 'fails' : 'works');
          if (data.fails) throw new SyntaxError('bad');
          return 'ok';
        });
        await q.add({ name: 'sync', data: { fails: false } });
        await q.add({ name: 'charge', data: { fails: true }, attempts: 2 });
        await q.work();
        await until(() => seen.length === 3, SLOW, 'three attempts');
        await sleep(500);
        expect(seen.sort()).toEqual(['fails', 'fails', 'works']);
      } finally {
        h.otel.instrumentation.setTracerProvider(h.otel.tracerProvider);
        h.otel.instrumentation.setMeterProvider(h.otel.meterProvider);
      }
    }, 60_000);

    it('queue state: depth by state and oldest ages, read once per cluster', async () => {
      const q = await queue('state', async () => {
        throw new Error('dead letter');
      });
      await q.add({ name: 'fail', data: {} });
      await q.work();
      await until(() => processSpans(q).length === 1, SLOW, 'failed job');
      // Stop taking jobs: close() would remove the queue, so pause by adding past a new worker-less queue.
      const idle = await queue('state-idle', async () => undefined);
      await idle.add({ name: 'wait', data: {} });
      await idle.add({ name: 'wait', data: {} });
      await idle.add({ name: 'later', data: {}, delayMs: 60_000 });
      await sleep(1_000);
      const read = async (dest: string) => {
        const m = await h.otel.collect();
        const counts = Object.fromEntries(points(m.get('queue.job.count'), { 'messaging.destination.name': dest }).map((p) => [p.attributes['queue.job.state'], p.value]));
        const oldest = points(m.get('queue.oldest.age'), { 'messaging.destination.name': dest })[0]?.value;
        const failedOldest = points(m.get('queue.failed.oldest.age'), { 'messaging.destination.name': dest })[0]?.value;
        return { counts, oldest, failedOldest };
      };
      if (features.states.length === 0) {
        // Not read for this library (version): after more than two state intervals, nothing is reported.
        await sleep(2_500);
        for (const dest of [idle.destination, q.destination]) expect(await read(dest)).toEqual({ counts: {}, oldest: undefined, failedOldest: undefined });
        return;
      }
      // Wait for a reading taken after all three adds: one taken between them (a loaded machine
      // can delay the next reading past the sleep above) already shows the two waiting jobs.
      await until(
        async () => {
          const { counts } = await read(idle.destination);
          return counts.waiting === 2 && counts.delayed === 1;
        },
        SLOW,
        'state of the idle queue',
      );
      const state = await read(idle.destination);
      expect(Object.keys(state.counts).sort()).toEqual([...features.states].sort());
      expect(state.counts).toMatchObject({ waiting: 2, delayed: 1, active: 0 });
      if (features.oldestAge) {
        expect(state.oldest).toBeGreaterThan(0.7);
        expect(state.oldest).toBeLessThan(10);
      } else {
        expect(state.oldest).toBeUndefined();
      }
      await until(async () => (await read(q.destination)).counts.failed === 1, SLOW, 'failed count');
      const failed = await read(q.destination);
      if (features.failedOldestAge) expect(failed.failedOldest).toBeGreaterThan(0);
      else expect(failed.failedOldest).toBeUndefined();
    }, 60_000);
  });
}

export type { ReadableSpan };
