// NodeSDK integration as a user writes it, and the cost rule: no extra Redis command per job.
import { NodeSDK } from '@opentelemetry/sdk-node';
import { InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace';
import { afterAll, describe, expect, it } from 'vitest';
import { BullMQInstrumentation } from '../src/index.js';
import { type BullMQ, TestReader, histogram, total } from './helpers/otel.js';
import { commandsUnder, type PrivateRedis, privateRedis } from './helpers/monitor.js';
import { connection, queueName, until } from './helpers/redis.js';
import { requireLibrary } from './helpers/library.js';

const spans = new InMemorySpanExporter();
const reader = new TestReader();
// Queue state is read once per interval per queue, not per job (test/queue-state.test.ts counts
// those reads); it is off here so that only per-job commands are compared.
const instrumentation = new BullMQInstrumentation({ queueState: false });
// SDK 3.x (sdk-node 0.30x) takes spanProcessors and metricReaders.
const sdk = new NodeSDK({ instrumentations: [instrumentation], spanProcessors: [new SimpleSpanProcessor({ exporter: spans })], metricReaders: [reader] });
sdk.start();
const bullmq = requireLibrary<BullMQ>('bullmq');
afterAll(async () => {
  await sdk.shutdown();
});

describe('NodeSDK', () => {
  it('instruments bullmq loaded after sdk.start(), with no other code', async () => {
    const name = queueName('sdk');
    const queue = new bullmq.Queue(name, { connection: connection() });
    let result: unknown;
    const worker = new bullmq.Worker(name, async () => 'done', { connection: connection() });
    worker.on('completed', (_j, r) => (result = r));
    await queue.add('nightly', {});
    await until(() => result !== undefined, 10_000, 'job');
    await worker.close();
    await queue.obliterate({ force: true });
    await queue.close();
    await until(() => spans.getFinishedSpans().some((s) => s.name === `process ${name}`), 10_000, 'exported span');
    expect(spans.getFinishedSpans().some((s) => s.name === `send ${name}`)).toBe(true);
    const { resourceMetrics } = await reader.collect();
    const metric = resourceMetrics.scopeMetrics.flatMap((s) => s.metrics).find((m) => m.descriptor.name === 'messaging.process.duration');
    expect(histogram(metric, { 'messaging.destination.name': name, 'queue.job.outcome': 'completed' }).count).toBe(1);
    const scope = resourceMetrics.scopeMetrics.find((s) => s.metrics.includes(metric!))?.scope;
    expect(scope?.name).toBe('queue-otel/bullmq');
    expect(scope?.schemaUrl).toBe('https://opentelemetry.io/schemas/1.45.0');
    const span = spans.getFinishedSpans().find((s) => s.name === `process ${name}`);
    expect(span?.instrumentationScope.schemaUrl).toBe('https://opentelemetry.io/schemas/1.45.0');
  });
});

/** 30 no-op jobs on a queue under `prefix`, on the private server. */
async function process30(redis: PrivateRedis, prefix: string): Promise<void> {
  const connection = { host: redis.host, port: redis.port, maxRetriesPerRequest: null };
  const name = queueName('cost');
  const queue = new bullmq.Queue(name, { connection, prefix });
  await queue.addBulk(Array.from({ length: 30 }, (_, i) => ({ name: 'noop', data: { i } })));
  let done = 0;
  const worker = new bullmq.Worker(name, async () => {}, { connection, prefix, concurrency: 1 });
  worker.on('completed', () => done++);
  await until(() => done === 30, 20_000, '30 jobs');
  await worker.close();
  await queue.obliterate({ force: true });
  await queue.close();
}

describe('cost', () => {
  it('adds no Redis command: the same commands, the same number of times, with and without instrumentation', async () => {
    // A server of its own: other clients' traffic on the shared one can break ioredis's MONITOR parser.
    const redis = await privateRedis();
    try {
      instrumentation.disable();
      const plain = await commandsUnder(redis, 'qo-plain', () => process30(redis, 'qo-plain'));
      instrumentation.enable();
      const instrumented = await commandsUnder(redis, 'qo-instr', () => process30(redis, 'qo-instr'));
      expect([...plain.values()].reduce((a, b) => a + b, 0)).toBeGreaterThan(30);
      expect(Object.fromEntries(instrumented)).toEqual(Object.fromEntries(plain));
    } finally {
      await redis.stop();
    }
  });
});
