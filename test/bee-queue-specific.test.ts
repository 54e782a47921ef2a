// What is Bee-Queue's own, beyond the conformance suite (test/bee-queue.test.ts): saveAll,
// callback-style handlers, and no extra Redis command per job.
import { SpanKind } from '@opentelemetry/api';
import { afterAll, describe, expect, it } from 'vitest';
import { BeeQueueInstrumentation } from '../src/index.js';
import { commandsUnder, privateRedis } from './helpers/monitor.js';
import { total } from './helpers/otel.js';
import { connection, queueName, until } from './helpers/redis.js';
import { setupTelemetry } from './helpers/sdk.js';
import { requireLibrary } from './helpers/library.js';

const otel = setupTelemetry(new BeeQueueInstrumentation({ queueState: false }));
const Queue = requireLibrary<typeof import('bee-queue')>('bee-queue');
const redis = { host: connection().host, port: connection().port };
const closers: Array<() => Promise<unknown>> = [];
afterAll(async () => {
  for (const close of closers.reverse()) await close().catch(() => {});
  await otel.shutdown();
});

function beeQueue(label: string, prefix?: string) {
  const name = queueName(`bee-${label}`);
  const queue = new Queue(name, { redis, ...(prefix ? { prefix } : {}) });
  closers.push(async () => {
    await queue.destroy();
    await queue.close();
  });
  return { name, queue };
}
const spansOf = (name: string, kind: SpanKind) =>
  otel.spans.getFinishedSpans().filter((s) => s.attributes['messaging.destination.name'] === name && s.kind === kind);

describe('bee-queue', () => {
  it('saveAll: one send span for the batch linking a create span per job, each job linked to its own, data and options untouched', async () => {
    const { name, queue } = beeQueue('saveall');
    const seen: unknown[] = [];
    // A callback-style handler (job, done): Bee-Queue tells it by its arity, which must survive.
    queue.process((job: { data: unknown }, done: (e: Error | null, r?: unknown) => void) => {
      seen.push(job.data);
      done(null, 'ok');
    });
    const jobs = [queue.createJob({ n: 1 }), queue.createJob({ n: 2 })];
    const options = jobs.map((j) => JSON.stringify(j.options));
    await queue.saveAll(jobs);
    // The application's job objects are not changed: the context is stored, not set on them.
    expect(jobs.map((j) => JSON.stringify(j.options))).toEqual(options);
    await until(() => spansOf(name, SpanKind.CONSUMER).length === 2, 10_000, 'two jobs');
    expect(seen).toEqual(expect.arrayContaining([{ n: 1 }, { n: 2 }]));
    const send = spansOf(name, SpanKind.PRODUCER).find((s) => s.name === `send ${name}`);
    expect(send!.attributes['messaging.batch.message_count']).toBe(2);
    const creates = spansOf(name, SpanKind.PRODUCER).filter((s) => s.name === `create ${name}`);
    expect(creates).toHaveLength(2);
    expect(send!.links.map((l) => l.context.spanId).sort()).toEqual(creates.map((c) => c.spanContext().spanId).sort());
    const linked = new Set<string>();
    for (const span of spansOf(name, SpanKind.CONSUMER)) {
      expect(span.links).toHaveLength(1);
      linked.add(span.links[0]!.context.spanId);
      expect(span.attributes['queue.job.outcome']).toBe('completed');
    }
    expect([...linked].sort()).toEqual(creates.map((c) => c.spanContext().spanId).sort());
    const m = await otel.collect();
    expect(total(m.get('messaging.client.sent.messages'), { 'messaging.destination.name': name })).toBe(2);
  });

  it('adds no Redis command: the same commands, the same number of times, with and without instrumentation', async () => {
    const server = await privateRedis();
    closers.unshift(() => server.stop()); // last: after every client of it has closed
    const run = (prefix: string) => async () => {
      const queue = new Queue(queueName('bee-cost'), { redis: { host: server.host, port: server.port }, prefix });
      let done = 0;
      queue.on('succeeded', () => done++);
      await queue.saveAll(Array.from({ length: 30 }, (_, i) => queue.createJob({ i })));
      queue.process(async () => undefined);
      await until(() => done === 30, 20_000, '30 jobs');
      await queue.close();
    };
    otel.instrumentation.disable();
    const plain = await commandsUnder(server, 'qo-bee-plain', run('qo-bee-plain'));
    otel.instrumentation.enable();
    const instrumented = await commandsUnder(server, 'qo-bee-instr', run('qo-bee-instr'));
    expect([...plain.values()].reduce((a, b) => a + b, 0)).toBeGreaterThan(30);
    expect(Object.fromEntries(instrumented)).toEqual(Object.fromEntries(plain));
  });
});
