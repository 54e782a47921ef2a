// 500 queues in one process: the first state reads, all due at startup, wait their turn (a few
// at a time, each timed from when it starts) instead of all timing out; every queue is reported.
import { createRequire } from 'node:module';
import { type DiagLogger, DiagLogLevel, diag } from '@opentelemetry/api';
import { AggregationTemporality, InstrumentType, MeterProvider, type MetricData, MetricReader } from '@opentelemetry/sdk-metrics';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { PgBossInstrumentation } from '../src/index.js';
import { privateRedis } from './helpers/monitor.js';
import { points, setupOtel } from './helpers/otel.js';
import { dropSchemas, pgUrl, schemaName } from './helpers/postgres.js';
import { queueName, until } from './helpers/redis.js';
import { setupTelemetry } from './helpers/sdk.js';

const require = createRequire(import.meta.url);
const QUEUES = 500;
const warnings: string[] = [];
const logger: DiagLogger = {
  error: (...args: unknown[]) => void warnings.push(args.map(String).join(' ')),
  warn: (...args: unknown[]) => void warnings.push(args.map(String).join(' ')),
  info: () => {},
  debug: () => {},
  verbose: () => {},
};
diag.setLogger(logger, DiagLogLevel.WARN);
// Default interval (15 s) and timeout (1 s): what an application starting with many queues gets;
// a cardinality limit above 500 queues x 8 states, so that every queue's own series can be seen.
const bull = setupOtel({ cardinalityLimit: 10_000 });
const boss = setupTelemetry(new PgBossInstrumentation({ cardinalityLimit: 10_000 }));

/** A reader whose SDK cardinality limit is as high as the instrumentation's (the SDK's default is 2,000). */
class WideReader extends MetricReader {
  constructor() {
    super({
      cardinalitySelector: () => 10_000,
      aggregationTemporalitySelector: (type) => (type === InstrumentType.OBSERVABLE_GAUGE ? AggregationTemporality.DELTA : AggregationTemporality.CUMULATIVE),
    });
  }
  protected async onShutdown(): Promise<void> {}
  protected async onForceFlush(): Promise<void> {}
}
function wideCollector(instrumentation: { setMeterProvider(provider: MeterProvider): void }): () => Promise<Map<string, MetricData>> {
  const reader = new WideReader();
  instrumentation.setMeterProvider(new MeterProvider({ readers: [reader] }));
  return async () => {
    const { resourceMetrics } = await reader.collect();
    const byName = new Map<string, MetricData>();
    for (const scope of resourceMetrics.scopeMetrics) for (const m of scope.metrics) byName.set(m.descriptor.name, m);
    return byName;
  };
}
const bullCollect = wideCollector(bull.instrumentation);
const bossCollect = wideCollector(boss.instrumentation);
const closers: Array<() => Promise<unknown>> = [];
beforeEach(() => {
  warnings.length = 0;
});
afterAll(async () => {
  for (const close of closers.reverse()) await close().catch(() => {});
  await bull.shutdown();
  await boss.shutdown();
});

/** Queues with a waiting count reported, among `names`. */
async function reported(collect: () => Promise<Map<string, MetricData>>, names: string[]): Promise<number> {
  const metric = (await collect()).get('queue.job.count');
  const seen = new Set(points(metric, { 'queue.job.state': 'waiting' }).filter((p) => p.value === 1).map((p) => p.attributes['messaging.destination.name']));
  return names.filter((n) => seen.has(n)).length;
}

describe(`${QUEUES} queues in one process`, () => {
  it('BullMQ, a connection per queue: every queue reported soon after startup, no warning', async () => {
    const redis = await privateRedis();
    closers.push(() => redis.stop());
    const names = Array.from({ length: QUEUES }, (_, i) => queueName(`many-${i}`));
    const queues = names.map((name) => new bull.bullmq.Queue(name, { connection: { host: redis.host, port: redis.port } }));
    closers.push(() => Promise.all(queues.map((q) => q.close())));
    await Promise.all(queues.map((q) => q.add('x', {})));
    await until(async () => (await reported(bullCollect, names)) === QUEUES, 30_000, `all ${QUEUES} queues reported`);
    expect(warnings.filter((w) => w.includes('not read'))).toEqual([]);
  }, 60_000);

  it('pg-boss: every queue reported soon after startup, no warning', async () => {
    const { PgBoss } = require('pg-boss') as typeof import('pg-boss');
    const schema = schemaName('many');
    const instance = new PgBoss({ connectionString: pgUrl(), schema, supervise: false, schedule: false });
    instance.on('error', () => {});
    await instance.start();
    closers.push(async () => {
      await instance.stop({ graceful: false });
      await dropSchemas(schema);
    });
    const names = Array.from({ length: QUEUES }, (_, i) => `many_${i}`);
    for (const name of names) await instance.createQueue(name);
    // pg-boss's monitor would count them; here one forced count fills every queue's row at once.
    await Promise.all(names.map((name) => instance.send(name, {})));
    for (const name of names) await instance.getQueueStats(name, { force: true });
    await until(async () => (await reported(bossCollect, names)) === QUEUES, 60_000, `all ${QUEUES} queues reported`);
    expect(warnings.filter((w) => w.includes('not read'))).toEqual([]);
  }, 120_000);
});
