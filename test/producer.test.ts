// Producer side and propagation through Redis: send spans, links (or parents), bulk adds, flows,
// uninstrumented producers, and BullMQ's own telemetry on either side.
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import type { BullMQOtel as BullMQOtelClass } from 'bullmq-otel';
import { satisfies } from 'semver';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { libraryVersion, requireBeside } from './helpers/library.js';
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

function track<T extends { close(): Promise<unknown> }>(thing: T, obliterate?: { obliterate(o: object): Promise<unknown> }): T {
  closers.push(async () => {
    await thing.close();
  });
  if (obliterate) closers.unshift(() => obliterate.obliterate({ force: true }));
  return thing;
}

const finished = () => otel.spans.getFinishedSpans();
/** BullMQ's own telemetry (the `telemetry` option) exists from bullmq 5.22.0. */
const nativeTelemetry = satisfies(libraryVersion('bullmq'), '>=5.22.0');
/**
 * Before 5.26.2 a worker with BullMQ's own telemetry fails every job that carries no propagation
 * metadata (its consumer span is put on an undefined context), with or without queue-otel.
 */
const nativeWorkerTelemetry = satisfies(libraryVersion('bullmq'), '>=5.26.2');
/** bullmq-otel of the major that fits the bullmq under test (1.x for bullmq 5, 2.x for 6). */
const BullMQOtel = () => requireBeside<{ BullMQOtel: typeof BullMQOtelClass }>('bullmq', 'bullmq-otel').BullMQOtel;
const named = (name: string) => finished().filter((s) => s.name === name);

describe('Queue.add', () => {
  it('makes a PRODUCER span, carries its context through Redis, and the process span links to it', async () => {
    const name = queueName('add');
    const queue = new otel.bullmq.Queue(name, { connection: connection() });
    track(queue, queue);
    const userOpts = { attempts: 1 };
    const job = await queue.add('email', { to: 'x' }, userOpts);
    expect(userOpts).toEqual({ attempts: 1 }); // the caller's options are not changed

    const [send] = named(`send ${name}`);
    expect(send?.kind).toBe(SpanKind.PRODUCER);
    expect(send?.attributes).toMatchObject({
      'messaging.system': 'bullmq',
      'messaging.destination.name': name,
      'messaging.operation.name': 'send',
      'messaging.operation.type': 'send',
      'queue.job.name': 'email',
      'messaging.message.id': job.id,
    });

    let done = false;
    const worker = track(new otel.bullmq.Worker(name, async () => 'sent', { connection: connection() }));
    worker.on('completed', () => (done = true));
    await until(() => done && named(`process ${name}`).length === 1, 10_000, 'processing');
    const [process] = named(`process ${name}`);
    expect(process!.links.map((l) => l.context.spanId)).toEqual([send!.spanContext().spanId]);
    expect(process!.spanContext().traceId).not.toBe(send!.spanContext().traceId);
    expect(process!.parentSpanContext).toBeUndefined();

    const m = await otel.collect();
    const attrs = { 'messaging.destination.name': name, 'queue.job.name': 'email', 'messaging.operation.name': 'send' };
    expect(total(m.get('messaging.client.sent.messages'), attrs)).toBe(1);
    expect(m.get('messaging.client.sent.messages')?.descriptor.unit).toBe('{message}');
    const op = histogram(m.get('messaging.client.operation.duration'), { 'messaging.destination.name': name, 'messaging.operation.name': 'send' });
    expect(op.count).toBe(1);
    expect(op.sum).toBeGreaterThan(0);
    expect(op.sum).toBeLessThan(5);
  });

  it('records a failed add with ERROR status and error.type, and rethrows the same error', async () => {
    const name = queueName('add-fail');
    const queue = track(new otel.bullmq.Queue(name, { connection: connection() }));
    const error = await queue.add('bad', {}, { jobId: '0' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(Error);
    const [send] = named(`send ${name}`);
    expect(send?.status.code).toBe(SpanStatusCode.ERROR);
    expect(send?.attributes['error.type']).toBe('Error');
    const m = await otel.collect();
    expect(histogram(m.get('messaging.client.operation.duration'), { 'messaging.destination.name': name, 'error.type': 'Error' }).count).toBe(1);
    expect(total(m.get('messaging.client.sent.messages'), { 'messaging.destination.name': name })).toBe(0);
  });
});

describe('useProducerSpanAsParent', () => {
  it('makes the send span the parent of the process span', async () => {
    otel.instrumentation.setConfig({ useProducerSpanAsParent: true });
    try {
      const name = queueName('parent');
      const queue = new otel.bullmq.Queue(name, { connection: connection() });
      track(queue, queue);
      await queue.add('child', {});
      track(new otel.bullmq.Worker(name, async () => {}, { connection: connection() }));
      await until(() => named(`process ${name}`).length === 1, 10_000, 'processing');
      const [send] = named(`send ${name}`);
      const [process] = named(`process ${name}`);
      expect(process!.parentSpanContext?.spanId).toBe(send!.spanContext().spanId);
      expect(process!.spanContext().traceId).toBe(send!.spanContext().traceId);
    } finally {
      otel.instrumentation.setConfig({});
    }
  });
});

describe('Queue.addBulk and FlowProducer', () => {
  /** The create span each process span links to, by the job's data. */
  const createOf = (process: ReturnType<typeof named>[number]) =>
    otel.spans.getFinishedSpans().find((s) => s.spanContext().spanId === process.links[0]?.context.spanId);

  it('addBulk: one send span for the batch linking a create span per job, each job linked to its own create span, counts by job name', async () => {
    const name = queueName('bulk');
    const queue = new otel.bullmq.Queue(name, { connection: connection() });
    track(queue, queue);
    const jobs = [
      { name: 'a', data: 1 },
      { name: 'a', data: 2 },
      { name: 'b', data: 3, opts: { priority: 2 } },
    ];
    await queue.addBulk(jobs);
    expect(jobs[2]).toEqual({ name: 'b', data: 3, opts: { priority: 2 } });
    const [send] = named(`send ${name}`);
    expect(send?.attributes['messaging.batch.message_count']).toBe(3);
    const creates = named(`create ${name}`);
    expect(creates).toHaveLength(3);
    for (const c of creates) {
      expect(c.kind).toBe(SpanKind.PRODUCER);
      expect(c.attributes).toMatchObject({ 'messaging.operation.type': 'create', 'messaging.destination.name': name });
    }
    expect(creates.map((c) => c.attributes['queue.job.name'])).toEqual(['a', 'a', 'b']);
    expect(send!.links.map((l) => l.context.spanId).sort()).toEqual(creates.map((c) => c.spanContext().spanId).sort());
    track(new otel.bullmq.Worker(name, async () => {}, { connection: connection() }));
    await until(() => named(`process ${name}`).length === 3, 10_000, 'processing');
    const linked = named(`process ${name}`).map((p) => createOf(p));
    expect(new Set(linked.map((c) => c?.spanContext().spanId)).size, 'each job links to a create span of its own').toBe(3);
    for (const c of linked) expect(creates).toContain(c);
    const m = await otel.collect();
    expect(total(m.get('messaging.client.sent.messages'), { 'messaging.destination.name': name, 'queue.job.name': 'a' })).toBe(2);
    expect(total(m.get('messaging.client.sent.messages'), { 'messaging.destination.name': name, 'queue.job.name': 'b' })).toBe(1);
  });

  it('addBulk with createSpans off: no create spans, every job carries the send span', async () => {
    otel.instrumentation.setConfig({ createSpans: false });
    try {
      const name = queueName('bulk-nocreate');
      const queue = new otel.bullmq.Queue(name, { connection: connection() });
      track(queue, queue);
      await queue.addBulk([{ name: 'a', data: 1 }, { name: 'b', data: 2 }]);
      const [send] = named(`send ${name}`);
      expect(named(`create ${name}`)).toHaveLength(0);
      expect(send!.links).toEqual([]);
      track(new otel.bullmq.Worker(name, async () => {}, { connection: connection() }));
      await until(() => named(`process ${name}`).length === 2, 10_000, 'processing');
      for (const p of named(`process ${name}`)) expect(p.links[0]?.context.spanId).toBe(send!.spanContext().spanId);
    } finally {
      otel.instrumentation.setConfig({});
    }
  });

  it('FlowProducer.add across queues: a send span with no destination, a create span per job; the parent waits from its last child', async () => {
    const parentQueue = queueName('flow-parent');
    const childQueue = queueName('flow-child');
    const flow = track(new otel.bullmq.FlowProducer({ connection: connection() }));
    const pq = new otel.bullmq.Queue(parentQueue, { connection: connection() });
    const cq = new otel.bullmq.Queue(childQueue, { connection: connection() });
    track(pq, pq);
    track(cq, cq);
    const before = otel.spans.getFinishedSpans().length;
    await flow.add({
      name: 'assemble',
      queueName: parentQueue,
      children: [
        { name: 'part', queueName: childQueue, data: 1 },
        { name: 'part', queueName: childQueue, data: 2 },
      ],
    });
    // Its jobs go to two queues: per the messaging conventions the send span names none.
    const send = otel.spans.getFinishedSpans().slice(before).find((s) => s.name === 'send' && s.kind === SpanKind.PRODUCER);
    expect(send, 'a send span without destination').toBeDefined();
    expect(send!.attributes['messaging.destination.name']).toBeUndefined();
    expect(send!.attributes['messaging.batch.message_count']).toBe(3);
    expect(named(`create ${parentQueue}`)).toHaveLength(1);
    expect(named(`create ${childQueue}`)).toHaveLength(2);
    track(new otel.bullmq.Worker(childQueue, async () => new Promise((r) => setTimeout(r, 300)), { connection: connection() }));
    track(new otel.bullmq.Worker(parentQueue, async () => 'assembled', { connection: connection() }));
    await until(() => named(`process ${parentQueue}`).length === 1 && named(`process ${childQueue}`).length === 2, 10_000, 'flow');
    const parentProcess = named(`process ${parentQueue}`)[0]!;
    expect(createOf(parentProcess)?.name).toBe(`create ${parentQueue}`);
    for (const p of named(`process ${childQueue}`)) expect(createOf(p)?.name).toBe(`create ${childQueue}`);
    // The parent's span also links to its children's creation: the trace shows the fan-out.
    const childCreates = named(`create ${childQueue}`).map((c) => c.spanContext().spanId).sort();
    expect(parentProcess.links.slice(1).map((l) => l.context.spanId).sort()).toEqual(childCreates);
    // The parent became ready when its last child finished, not when it was added: its wait
    // starts then (this process ran both children, so it knows when that was).
    const parentJob = (await pq.getJobs(['completed']))[0]!;
    const lastChild = Math.max(...(await cq.getJobs(['completed'])).map((j) => j.finishedOn!));
    const parentWait = parentProcess.attributes['queue.job.wait.duration'] as number;
    expect(parentWait, 'from the last child, not from the add').toBeGreaterThanOrEqual((parentJob.processedOn! - lastChild) / 1000 - 0.002);
    expect(parentWait).toBeLessThan((parentJob.processedOn! - parentJob.timestamp) / 1000 - 0.5); // two 300 ms children ran before
    expect(named(`process ${childQueue}`)[0]!.attributes['queue.job.wait.duration']).toBeGreaterThanOrEqual(0);
    const m = await otel.collect();
    expect(total(m.get('messaging.client.sent.messages'), { 'messaging.destination.name': childQueue, 'queue.job.name': 'part' })).toBe(2);
    expect(total(m.get('messaging.client.sent.messages'), { 'messaging.destination.name': parentQueue, 'queue.job.name': 'assemble' })).toBe(1);
    const waits = histogram(m.get('queue.job.wait.duration'), { 'messaging.destination.name': parentQueue });
    expect(waits.count).toBe(1);
    expect(waits.sum).toBeCloseTo(parentWait, 6);
    // The call's duration has no destination either.
    expect(points(m.get('messaging.client.operation.duration'), { 'messaging.system': 'bullmq' }).some((p) => p.attributes['messaging.destination.name'] === undefined)).toBe(true);
  });
});

describe('flow parents whose children ran elsewhere', () => {
  it('reports no wait for a parent one of whose children this process did not run', async () => {
    const parentQueue = queueName('flow-parent-elsewhere');
    const childQueue = queueName('flow-child-elsewhere');
    const flow = track(new otel.bullmq.FlowProducer({ connection: connection() }));
    const pq = new otel.bullmq.Queue(parentQueue, { connection: connection() });
    const cq = new otel.bullmq.Queue(childQueue, { connection: connection() });
    track(pq, pq);
    track(cq, cq);
    await flow.add({ name: 'assemble', queueName: parentQueue, children: [{ name: 'part', queueName: childQueue, data: 1 }, { name: 'part', queueName: childQueue, data: 2 }] });
    // One child is completed by hand, as another process would (a Worker without a processor is
    // not instrumented), after the other ran here: this process cannot know which finished last.
    const manual = track(new otel.bullmq.Worker(childQueue, undefined, { connection: connection() }));
    const token = 'by-hand';
    const taken = await manual.getNextJob(token);
    await taken!.moveToCompleted('done elsewhere', token, false);
    track(new otel.bullmq.Worker(childQueue, async () => 'done here', { connection: connection() }));
    track(new otel.bullmq.Worker(parentQueue, async () => 'assembled', { connection: connection() }));
    await until(() => named(`process ${parentQueue}`).length === 1, 10_000, 'the parent');
    expect(named(`process ${childQueue}`)).toHaveLength(1);
    expect(named(`process ${parentQueue}`)[0]!.attributes['queue.job.wait.duration']).toBeUndefined();
    const m = await otel.collect();
    expect(histogram(m.get('queue.job.wait.duration'), { 'messaging.destination.name': parentQueue }).count).toBe(0);
  });
});

describe('producers without queue-otel, and BullMQ native telemetry', () => {
  it('a job added by an uninstrumented producer is processed normally, with a process span and no link', async () => {
    const name = queueName('plain-producer');
    otel.instrumentation.disable();
    const queue = new otel.bullmq.Queue(name, { connection: connection() });
    track(queue, queue);
    await queue.add('legacy', {});
    otel.instrumentation.enable();
    let result: unknown;
    const worker = track(new otel.bullmq.Worker(name, async () => 7, { connection: connection() }));
    worker.on('completed', (_j, r) => (result = r));
    await until(() => result !== undefined, 10_000, 'processing');
    expect(result).toBe(7);
    expect(named(`send ${name}`)).toHaveLength(0);
    const [process] = named(`process ${name}`);
    expect(process?.links).toEqual([]);
  });

  it.skipIf(!nativeTelemetry)('links to the context a producer with BullMQ native telemetry stored in the job', async () => {
    const name = queueName('native-producer');
    // Native telemetry uses the global tracer provider; give it ours for this test.
    const { trace } = await import('@opentelemetry/api');
    trace.setGlobalTracerProvider(otel.tracerProvider);
    try {
      const telemetry = new (BullMQOtel())({ tracerName: 'native', version: '1' } as never);
      const queue = new otel.bullmq.Queue(name, { connection: connection(), telemetry });
      track(queue, queue);
      await queue.add('native', {});
      const nativeSend = finished().find((s) => s.kind === SpanKind.PRODUCER && s.name.includes(name));
      expect(nativeSend, 'BullMQ made its own producer span').toBeDefined();
      expect(named(`send ${name}`), 'queue-otel made no second producer span').toHaveLength(0);
      track(new otel.bullmq.Worker(name, async () => {}, { connection: connection() }));
      await until(() => named(`process ${name}`).length === 1, 10_000, 'processing');
      expect(named(`process ${name}`)[0]!.links[0]?.context.spanId).toBe(nativeSend!.spanContext().spanId);
    } finally {
      trace.disable();
    }
  });

  it.skipIf(!nativeWorkerTelemetry)('a worker with BullMQ native telemetry gets exactly one process span per attempt, marked ERROR when it fails, and all metrics', async () => {
    const name = queueName('native-worker');
    const { trace } = await import('@opentelemetry/api');
    trace.setGlobalTracerProvider(otel.tracerProvider);
    try {
      const telemetry = new (BullMQOtel())({ tracerName: 'native', version: '1' } as never);
      const queue = new otel.bullmq.Queue(name, { connection: connection() });
      track(queue, queue);
      let failed = 0;
      const worker = track(new otel.bullmq.Worker(name, async () => { throw new RangeError('nope'); }, { connection: connection(), telemetry }));
      worker.on('failed', () => failed++);
      await queue.add('risky', {});
      await until(() => failed === 1, 10_000, 'failure');
      await until(() => finished().some((s) => s.kind === SpanKind.CONSUMER && s.name.includes(name)), 5_000, 'span');
      const consumerSpans = finished().filter((s) => s.kind === SpanKind.CONSUMER && s.name.includes(name));
      expect(consumerSpans).toHaveLength(1);
      expect(consumerSpans[0]!.status.code).toBe(SpanStatusCode.ERROR);
      expect(consumerSpans[0]!.attributes['error.type']).toBe('RangeError');
      const m = await otel.collect();
      expect(histogram(m.get('messaging.process.duration'), { 'messaging.destination.name': name, 'queue.job.outcome': 'failed', 'error.type': 'RangeError' }).count).toBe(1);
    } finally {
      trace.disable();
    }
  });
});
