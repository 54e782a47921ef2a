// Consumer side against a real Redis: the process span, outcomes, errors passed through unchanged,
// and every per-attempt metric with its unit and attributes.
import { SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import type { SumMetricData } from '@opentelemetry/sdk-metrics';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { satisfies } from 'semver';
import { libraryVersion } from './helpers/library.js';
import { histogram, type Otel, points, setupOtel, total } from './helpers/otel.js';
import { connection, queueName, until } from './helpers/redis.js';

let otel: Otel;
const closers: Array<() => Promise<unknown>> = [];

beforeAll(() => {
  otel = setupOtel();
});
afterAll(async () => {
  for (const close of closers.reverse()) await close().catch(() => {});
  await otel.shutdown();
});

/** A queue and a worker on it, closed and obliterated after the file. */
function queueWithWorker(label: string, processor: (job: any) => Promise<unknown>, workerOpts: object = {}) {
  const name = queueName(label);
  const queue = new otel.bullmq.Queue(name, { connection: connection() });
  const worker = new otel.bullmq.Worker(name, processor, { connection: connection(), ...workerOpts });
  closers.push(async () => {
    await worker.close();
    await queue.obliterate({ force: true });
    await queue.close();
  });
  return { name, queue, worker };
}

function processSpans(queue: string) {
  return otel.spans.getFinishedSpans().filter((s) => s.name === `process ${queue}`);
}

describe('a job that completes', () => {
  it('runs inside a CONSUMER span the processor sees, with the schema attributes, and returns its result unchanged', async () => {
    const result = { ok: true, list: [1, 2, 3] };
    let seenInside: string | undefined;
    const { name, queue, worker } = queueWithWorker('complete', async () => {
      const child = otel.tracerProvider.getTracer('user').startSpan('user work');
      seenInside = trace.getActiveSpan()?.spanContext().spanId;
      child.end();
      return result;
    });
    let returned: unknown;
    worker.on('completed', (_job, value) => (returned = value));
    const job = await queue.add('resize', { a: 1 });
    await until(() => returned !== undefined, 10_000, 'completion');

    expect(returned).toBe(result); // the same object BullMQ got from the processor
    expect((await queue.getJob(job.id!))?.returnvalue).toEqual(result);

    const [span] = processSpans(name);
    expect(span).toBeDefined();
    expect(span!.kind).toBe(SpanKind.CONSUMER);
    expect(span!.attributes).toMatchObject({
      'messaging.system': 'bullmq',
      'messaging.destination.name': name,
      'messaging.operation.name': 'process',
      'messaging.operation.type': 'process',
      'messaging.message.id': job.id,
      'queue.job.name': 'resize',
      'queue.job.attempt': 1,
      'queue.job.outcome': 'completed',
    });
    expect(span!.attributes['queue.job.wait.duration']).toBeGreaterThanOrEqual(0);
    expect(span!.status.code).toBe(SpanStatusCode.UNSET);
    expect(seenInside).toBe(span!.spanContext().spanId);
    const child = otel.spans.getFinishedSpans().find((s) => s.name === 'user work' && s.parentSpanContext?.spanId === span!.spanContext().spanId);
    expect(child, 'a span started in the processor is a child of the process span').toBeDefined();
    // No payload or result on the span.
    expect(JSON.stringify(span!.attributes)).not.toContain('list');

    const m = await otel.collect();
    const attrs = { 'messaging.destination.name': name, 'queue.job.name': 'resize' };
    expect(m.get('messaging.process.duration')?.descriptor.unit).toBe('s');
    expect(histogram(m.get('messaging.process.duration'), { ...attrs, 'queue.job.outcome': 'completed' }).count).toBe(1);
    expect(histogram(m.get('messaging.process.duration'), { ...attrs, 'queue.job.outcome': 'completed', 'messaging.operation.name': 'process' }).count).toBe(1);
    // Deliveries, as the messaging conventions define the counter: one per attempt started, no outcome.
    const deliveries = points(m.get('messaging.client.consumed.messages'), attrs);
    expect(deliveries).toHaveLength(1);
    expect(deliveries[0]!.value).toBe(1);
    expect(deliveries[0]!.attributes).toEqual({ 'messaging.system': 'bullmq', ...attrs, 'messaging.operation.name': 'process' });
    expect(m.get('messaging.client.consumed.messages')?.descriptor.unit).toBe('{message}');
    expect((m.get('messaging.client.consumed.messages') as SumMetricData).isMonotonic).toBe(true);
    // Additive values are up-down counters (a sum over processes is right by the data model).
    expect((m.get('queue.job.active') as SumMetricData).isMonotonic).toBe(false);
    const attempts = histogram(m.get('queue.job.attempts'), { ...attrs, 'queue.job.outcome': 'completed' });
    expect(attempts).toMatchObject({ count: 1, sum: 1 });
    expect(histogram(m.get('queue.job.wait.duration'), attrs).count).toBe(1);
    expect(total(m.get('queue.job.active'), attrs)).toBe(0);
    for (const metric of m.values()) {
      for (const p of metric.dataPoints) expect(Object.values(p.attributes)).not.toContain(job.id);
    }
  });
});

describe('a job that fails', () => {
  it('is retried, then fails for good: ERROR spans with the exception, outcomes retried then failed, the same error object reaches BullMQ', async () => {
    class PaymentDeclined extends Error {}
    const thrown: Error[] = [];
    const { name, queue, worker } = queueWithWorker('fail', async () => {
      const error = new PaymentDeclined(`declined #${thrown.length + 1}`);
      thrown.push(error);
      throw error;
    });
    const seen: unknown[] = [];
    worker.on('failed', (_job, err) => seen.push(err));
    const job = await queue.add('charge', {}, { attempts: 2 });
    await until(() => seen.length === 2, 10_000, 'two failures');

    expect(seen).toEqual(thrown);
    expect(seen[0]).toBe(thrown[0]);
    expect(seen[1]).toBe(thrown[1]);
    const stored = await queue.getJob(job.id!);
    expect(await stored?.getState()).toBe('failed');
    expect(stored?.failedReason).toBe('declined #2');
    expect(stored?.attemptsMade).toBe(2);

    await until(() => processSpans(name).length === 2, 5_000, 'two spans');
    const spans = processSpans(name).sort((a, b) => Number(a.attributes['queue.job.attempt']) - Number(b.attributes['queue.job.attempt']));
    expect(spans.map((s) => s.attributes['queue.job.outcome'])).toEqual(['retried', 'failed']);
    expect(spans.map((s) => s.attributes['queue.job.attempt'])).toEqual([1, 2]);
    for (const span of spans) {
      expect(span.status).toMatchObject({ code: SpanStatusCode.ERROR });
      expect(span.attributes['error.type']).toBe('PaymentDeclined');
      expect(span.events.find((e) => e.name === 'exception')?.attributes?.['exception.message']).toMatch(/^declined #/);
    }
    // The retry's wait is unknown to BullMQ, so it is not invented.
    expect(spans[1]!.attributes['queue.job.wait.duration']).toBeUndefined();

    const m = await otel.collect();
    const attrs = { 'messaging.destination.name': name, 'queue.job.name': 'charge' };
    expect(histogram(m.get('messaging.process.duration'), { ...attrs, 'queue.job.outcome': 'retried', 'error.type': 'PaymentDeclined' }).count).toBe(1);
    expect(histogram(m.get('messaging.process.duration'), { ...attrs, 'queue.job.outcome': 'failed', 'error.type': 'PaymentDeclined' }).count).toBe(1);
    expect(histogram(m.get('messaging.process.duration'), { ...attrs, 'queue.job.outcome': 'completed' }).count).toBe(0);
    expect(histogram(m.get('messaging.process.duration'), attrs).count).toBe(2);
    expect(total(m.get('messaging.client.consumed.messages'), attrs), 'two deliveries').toBe(2);
    expect(histogram(m.get('queue.job.attempts'), { ...attrs, 'queue.job.outcome': 'failed' })).toMatchObject({ count: 1, sum: 2 });
    expect(histogram(m.get('queue.job.wait.duration'), attrs).count).toBe(1);
  });

  it('counts a job that succeeds on its second attempt as retried once, then completed after 2 attempts', async () => {
    let calls = 0;
    const { name, queue, worker } = queueWithWorker('flaky', async () => {
      calls++;
      if (calls === 1) throw new TypeError('transient');
      return 'ok';
    });
    let done = false;
    worker.on('completed', () => (done = true));
    await queue.add('sync', {}, { attempts: 3, backoff: { type: 'fixed', delay: 50 } });
    await until(() => done, 10_000, 'completion');
    const m = await otel.collect();
    const attrs = { 'messaging.destination.name': name, 'queue.job.name': 'sync' };
    expect(histogram(m.get('messaging.process.duration'), { ...attrs, 'queue.job.outcome': 'retried', 'error.type': 'TypeError' }).count).toBe(1);
    expect(histogram(m.get('messaging.process.duration'), { ...attrs, 'queue.job.outcome': 'completed' }).count).toBe(1);
    expect(histogram(m.get('queue.job.attempts'), { ...attrs, 'queue.job.outcome': 'completed' })).toMatchObject({ count: 1, sum: 2 });
  });

  it('treats UnrecoverableError as final even with attempts left', async () => {
    const { name, queue, worker } = queueWithWorker('unrecoverable', async () => {
      throw new otel.bullmq.UnrecoverableError('bad input');
    });
    let failed = 0;
    worker.on('failed', () => failed++);
    await queue.add('parse', {}, { attempts: 5 });
    await until(() => failed === 1, 10_000, 'failure');
    await until(() => processSpans(name).length === 1, 5_000, 'span');
    expect(processSpans(name)[0]!.attributes).toMatchObject({ 'queue.job.outcome': 'failed', 'error.type': 'UnrecoverableError' });
  });

  it('a flow parent failed by its child (failParentOnFailure) is reported failed, never completed', async () => {
    const { name: parentName, queue: parentQueue } = queueWithWorker('fpof-parent', async () => 'never runs');
    const { name: childName } = queueWithWorker('fpof-child', async () => {
      throw new Error('child broke');
    });
    const flow = new otel.bullmq.FlowProducer({ connection: connection() });
    closers.push(() => flow.close());
    const tree = await flow.add({
      name: 'assemble',
      queueName: parentName,
      children: [{ name: 'part', queueName: childName, data: {}, opts: { failParentOnFailure: true } }],
    });
    await until(async () => (await parentQueue.getJobState(tree.job.id!)) === 'failed', 10_000, 'parent failed');
    // From bullmq 5.49.2 the parent goes back to wait and a worker fails it with UnrecoverableError
    // without calling its processor (one attempt); before, Redis moves it to failed (no attempt).
    const attempted = satisfies(libraryVersion('bullmq'), '>=5.49.2');
    if (attempted) await until(() => processSpans(parentName).length === 1, 5_000, 'parent span');
    const spans = processSpans(parentName);
    expect(spans).toHaveLength(attempted ? 1 : 0);
    for (const span of spans) expect(span.attributes).toMatchObject({ 'queue.job.outcome': 'failed', 'error.type': 'UnrecoverableError' });
    const m = await otel.collect();
    expect(histogram(m.get('messaging.process.duration'), { 'messaging.destination.name': parentName, 'queue.job.outcome': 'completed' }).count).toBe(0);
  });
});

describe('wait time', () => {
  it('counts from when a delayed job became due, not from when it was added', async () => {
    let startedAt = 0;
    const { name, queue } = queueWithWorker('delayed', async () => {
      startedAt = Date.now();
    });
    const addedAt = Date.now();
    await queue.add('later', {}, { delay: 2_000 });
    await until(() => startedAt > 0, 10_000, 'delayed job start');
    expect(startedAt - addedAt).toBeGreaterThanOrEqual(1_900);
    const m = await otel.collect();
    const wait = histogram(m.get('queue.job.wait.duration'), { 'messaging.destination.name': name });
    expect(wait.count).toBe(1);
    // Promotion of due delayed jobs happens on the worker's next poll; well under the 2 s delay.
    expect(wait.sum).toBeLessThan(0.5);
    expect(wait.sum).toBeGreaterThanOrEqual(0);
  });

  it('measures the time a ready job waited for a free worker', async () => {
    const { name, queue, worker } = queueWithWorker('backlog', async () => new Promise((r) => setTimeout(r, 300)), { concurrency: 1, autorun: false });
    await queue.addBulk([{ name: 'slow', data: {} }, { name: 'slow', data: {} }, { name: 'slow', data: {} }]);
    void worker.run();
    await until(async () => (await queue.getJobCounts('completed')).completed === 3, 10_000, 'three jobs');
    const wait = histogram((await otel.collect()).get('queue.job.wait.duration'), { 'messaging.destination.name': name });
    expect(wait.count).toBe(3);
    // The third job waited for the first two (about 0.6 s) plus worker start-up.
    expect(wait.max).toBeGreaterThanOrEqual(0.55);
  });
});

describe('live metrics read at collection time', () => {
  it('busy time rises at each collection while a long job runs, and equals its duration when it ends', async () => {
    let release!: () => void;
    const { name, queue } = queueWithWorker('busy', () => new Promise<void>((r) => (release = r)));
    await queue.add('report', {});
    const attrs = { 'messaging.destination.name': name, 'queue.job.name': 'report' };
    await until(async () => total((await otel.collect()).get('queue.job.active'), attrs) === 1, 10_000, 'job start');

    const readings: number[] = [];
    for (let i = 0; i < 3; i++) {
      await new Promise((r) => setTimeout(r, 400));
      const m = await otel.collect();
      readings.push(total(m.get('queue.job.busy.time'), attrs));
      expect(total(m.get('queue.job.active'), attrs)).toBe(1);
    }
    // Each collection adds about the 0.4 s elapsed since the previous one (tolerance for a noisy machine).
    expect(readings[1]! - readings[0]!).toBeGreaterThan(0.3);
    expect(readings[2]! - readings[1]!).toBeGreaterThan(0.3);
    expect(readings[1]! - readings[0]!).toBeLessThan(1.5);
    release();
    await until(async () => total((await otel.collect()).get('queue.job.active'), attrs) === 0, 10_000, 'job end');
    const m = await otel.collect();
    const busy = total(m.get('queue.job.busy.time'), attrs);
    const duration = histogram(m.get('messaging.process.duration'), attrs).sum;
    expect(busy).toBeGreaterThanOrEqual(readings[2]!);
    // Busy time of an ended job is its attempt duration: within 5 ms.
    expect(Math.abs(busy - duration)).toBeLessThan(0.005);
    expect(m.get('queue.job.busy.time')?.descriptor.unit).toBe('s');
    expect((m.get('queue.job.busy.time') as { isMonotonic?: boolean } | undefined)?.isMonotonic).toBe(true);
  });

  it('reports the concurrency of running workers, and 0 once they close', async () => {
    const name = queueName('concurrency');
    const a = new otel.bullmq.Worker(name, async () => {}, { connection: connection(), concurrency: 4 });
    const b = new otel.bullmq.Worker(name, async () => {}, { connection: connection(), concurrency: 6 });
    const attrs = { 'messaging.destination.name': name, 'messaging.system': 'bullmq' };
    await until(async () => total((await otel.collect()).get('queue.worker.concurrency'), attrs) === 10, 10_000, 'concurrency 10');
    b.concurrency = 2;
    expect(total((await otel.collect()).get('queue.worker.concurrency'), attrs)).toBe(6);
    await a.close();
    await b.close();
    await until(async () => total((await otel.collect()).get('queue.worker.concurrency'), attrs) === 0, 10_000, 'concurrency 0');
    expect(points((await otel.collect()).get('queue.worker.concurrency'), attrs)).toHaveLength(1);
  });
});
