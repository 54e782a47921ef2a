// pg-boss 12 through its own API, for the conformance suite. pg-boss is an ES module; it is
// loaded with require() as a CommonJS application would (Node 22.12+), the path
// require-in-the-middle patches (test/pg-boss-specific.test.ts covers `import`).
import { PgBossInstrumentation } from '../../../src/index.js';
import { satisfies } from 'semver';
import { libraryVersion, requireLibrary } from '../../helpers/library.js';
import { dropSchemas, pgUrl, schemaName } from '../../helpers/postgres.js';
import { queueName } from '../../helpers/redis.js';
import { setupTelemetry } from '../../helpers/sdk.js';
import type { Driver, TestQueue } from '../driver.js';

type PgBossModule = typeof import('pg-boss');

/** pg-boss's own OpenTelemetry (12.38.0+): its spans, and the trace context it stores with each job. */
const ownTelemetry = satisfies(libraryVersion('pg-boss'), '>=12.38.0');

export const pgBossDriver: Driver = {
  system: 'pg-boss',
  features: {
    // Only pg-boss's telemetry stores a producer's context with the job.
    propagation: ownTelemetry,
    jobNames: false,
    retryWaitTime: true,
    ...(ownTelemetry ? { nativeTelemetry: { scope: 'pg-boss' } } : {}),
    // The queue columns queue-otel reads exist from 12.38.0: before, no state is reported.
    states: ownTelemetry ? ['waiting', 'active', 'delayed', 'waiting-children', 'failed'] : [],
    oldestAge: ownTelemetry,
    failedOldestAge: ownTelemetry,
  },
  async start(config) {
    // pg-boss's own telemetry uses the global providers, as under NodeSDK.
    const otel = setupTelemetry(new PgBossInstrumentation(config), true);
    const { PgBoss } = requireLibrary<PgBossModule>('pg-boss');
    const schema = schemaName('pgboss');
    const boss = new PgBoss({
      connectionString: pgUrl(),
      schema,
      monitorIntervalSeconds: 1,
      superviseIntervalSeconds: 1,
      openTelemetry: { propagateContext: true },
    });
    boss.on('error', (error) => console.error('pg-boss error', error));
    await boss.start();
    return {
      otel,
      async queue(label, processor, options = {}): Promise<TestQueue> {
        const name = queueName(`pgboss-${label}`).replace(/-/g, '_');
        await boss.createQueue(name);
        let started = false;
        return {
          destination: name,
          async add(job) {
            const id = await boss.send(name, job.data, {
              retryLimit: (job.attempts ?? 1) - 1,
              retryDelay: 0,
              ...(job.delayMs !== undefined ? { startAfter: new Date(Date.now() + job.delayMs) } : {}),
            });
            return id ?? undefined;
          },
          async work() {
            if (started) return;
            started = true;
            await boss.work(name, { pollingIntervalSeconds: 0.5, localConcurrency: options.concurrency ?? 1 }, async ([job]) =>
              processor({ name: undefined, data: job!.data }),
            );
          },
          async close() {
            await boss.offWork(name);
            await boss.deleteQueue(name);
          },
        };
      },
      async shutdown() {
        await boss.stop({ graceful: false });
        await dropSchemas(schema);
        await otel.shutdown();
      },
    };
  },
};
