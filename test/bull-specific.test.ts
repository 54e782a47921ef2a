// What is Bull's own, beyond the conformance suite (test/bull.test.ts): jobs without a name,
// sandboxed (file) processors, stalled jobs, and no extra Redis command per job.
import { fileURLToPath } from 'node:url';
import { SpanKind } from '@opentelemetry/api';
import { afterAll, describe, expect, it } from 'vitest';
import { BullInstrumentation } from '../src/index.js';
import { commandsUnder, privateRedis } from './helpers/monitor.js';
import { histogram, points } from './helpers/otel.js';
import { connection, queueName, until } from './helpers/redis.js';
import { setupTelemetry } from './helpers/sdk.js';
import { requireLibrary } from './helpers/library.js';

const otel = setupTelemetry(new BullInstrumentation({ queueState: false }));
const Queue = requireLibrary<typeof import('bull')>('bull');
const redis = { host: connection().host, port: connection().port };
const closers: Array<() => Promise<unknown>> = [];
afterAll(async () => {
  for (const close of closers.reverse()) await close().catch(() => {});
  await otel.shutdown();
});

function bullQueue(label: string, prefix?: string) {
  const name = queueName(`bull-${label}`);
  const queue = new Queue(name, { redis, ...(prefix ? { prefix } : {}) });
  closers.push(async () => {
    await queue.obliterate({ force: true });
    await queue.close();
  });
  return { name, queue };
}
const spansOf = (name: string) => otel.spans.getFinishedSpans().filter((s) => s.attributes['messaging.destination.name'] === name);

describe('bull', () => {
  it('reports no job name for jobs added without one (Bull calls them __default__)', async () => {
    const { name, queue } = bullQueue('unnamed');
    void queue.process(async () => 'ok');
    await queue.add({ x: 1 });
    await until(() => spansOf(name).some((s) => s.kind === SpanKind.CONSUMER), 10_000, 'process span');
    for (const span of spansOf(name)) expect(span.attributes['queue.job.name']).toBeUndefined();
    const m = await otel.collect();
    const wait = points(m.get('queue.job.wait.duration'), { 'messaging.destination.name': name });
    expect(wait).toHaveLength(1);
    expect(wait[0]!.attributes['queue.job.name']).toBeUndefined();
  });

  it('a sandboxed (file) processor: the span and metrics in the parent, CPU and memory of the child process', async () => {
    const { name, queue } = bullQueue('sandbox');
    // A .js file: Bull accepts .cjs processors only from 4.9.0.
    void queue.process('crunch', fileURLToPath(new URL('./fixtures/resource-processor.js', import.meta.url)));
    let result: { cpuMs: number; rss: number } | undefined;
    queue.on('completed', (_job, value) => (result = value));
    await queue.add('crunch', { spinMs: 400, holdMb: 30 });
    await until(() => result !== undefined && spansOf(name).some((s) => s.kind === SpanKind.CONSUMER), 30_000, 'sandboxed job');
    const span = spansOf(name).find((s) => s.kind === SpanKind.CONSUMER)!;
    expect(span.attributes['queue.job.outcome']).toBe('completed');
    const cpuS = Number(span.attributes['queue.job.cpu.time']);
    // The child's CPU as read from /proc across the job, against what it measured of itself.
    expect(cpuS).toBeGreaterThan(result!.cpuMs / 1000 - 0.05);
    expect(cpuS).toBeLessThan(result!.cpuMs / 1000 + 0.25);
    expect(Number(span.attributes['queue.job.memory.peak'])).toBeGreaterThan(result!.rss * 0.7);
    const m = await otel.collect();
    expect(histogram(m.get('queue.job.memory.peak'), { 'messaging.destination.name': name }).count).toBe(1);
  });

  it('adds no Redis command: the same commands, the same number of times, with and without instrumentation', async () => {
    const server = await privateRedis();
    closers.unshift(() => server.stop()); // last: after every client of it has closed
    const run = (prefix: string) => async () => {
      const queue = new Queue(queueName('bull-cost'), { redis: { host: server.host, port: server.port }, prefix });
      let done = 0;
      queue.on('completed', () => done++);
      await queue.addBulk(Array.from({ length: 30 }, (_, i) => ({ name: 'noop', data: { i } })));
      void queue.process('noop', 1, async () => undefined);
      await until(() => done === 30, 20_000, '30 jobs');
      await queue.close();
    };
    otel.instrumentation.disable();
    // Once, untracked: the first client on a fresh server loads Bull's scripts (ioredis 4, used
    // by Bull before 4.10.2, with EVAL), which is not a per-job command of either run.
    await run('qo-bull-warm')();
    const plain = await commandsUnder(server, 'qo-bull-plain', run('qo-bull-plain'));
    otel.instrumentation.enable();
    const instrumented = await commandsUnder(server, 'qo-bull-instr', run('qo-bull-instr'));
    expect([...plain.values()].reduce((a, b) => a + b, 0)).toBeGreaterThan(30);
    expect(Object.fromEntries(instrumented)).toEqual(Object.fromEntries(plain));
  });
});
