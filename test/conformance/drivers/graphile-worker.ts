// graphile-worker 0.18 through its own API, for the conformance suite. Each queue is a worker
// schema of its own (graphile-worker's destination). graphile-worker is an ES module; it is
// loaded with require() as a CommonJS application would (Node 22.12+), the path
// require-in-the-middle patches (test/esm-loading.test.ts covers `import`).
import { GraphileWorkerInstrumentation } from '../../../src/index.js';
import { requireLibrary } from '../../helpers/library.js';
import { dropSchemas, pgUrl, schemaName } from '../../helpers/postgres.js';
import { setupTelemetry } from '../../helpers/sdk.js';
import type { Driver, TestQueue } from '../driver.js';
import { JOB_NAMES } from '../suite.js';

type GraphileWorker = typeof import('graphile-worker');

export const graphileWorkerDriver: Driver = {
  system: 'graphile-worker',
  features: {
    propagation: false,
    jobNames: true,
    retryWaitTime: true,
    states: ['waiting', 'active', 'delayed', 'failed'],
    oldestAge: true,
    failedOldestAge: true,
  },
  async start(config) {
    const otel = setupTelemetry(new GraphileWorkerInstrumentation(config));
    const gw = requireLibrary<GraphileWorker>('graphile-worker');
    const schemas: string[] = [];
    const quiet = new gw.Logger(() => () => {});
    return {
      otel,
      async queue(label, processor, options = {}): Promise<TestQueue> {
        const schema = schemaName(`gw_${label}`);
        schemas.push(schema);
        const connectionString = pgUrl();
        const utils = await gw.makeWorkerUtils({ connectionString, schema });
        await utils.migrate();
        let runner: Awaited<ReturnType<GraphileWorker['run']>> | undefined;
        const task = (name: string) => async (payload: unknown): Promise<void> => {
          await processor({ name, data: payload });
        };
        return {
          destination: schema,
          async add(job) {
            const added = await utils.addJob(job.name, job.data, {
              maxAttempts: job.attempts ?? 1,
              ...(job.delayMs !== undefined ? { runAt: new Date(Date.now() + job.delayMs) } : {}),
            });
            return String(added.id);
          },
          async work() {
            if (runner) return;
            runner = await gw.run({
              connectionString,
              schema,
              concurrency: options.concurrency ?? 1,
              pollInterval: 200,
              noHandleSignals: true,
              logger: quiet,
              taskList: Object.fromEntries(JOB_NAMES.map((name) => [name, task(name)])),
            });
          },
          async close() {
            await runner?.stop().catch(() => {}); // already stopped when its pool ended
            await utils.release();
          },
        };
      },
      async shutdown() {
        await dropSchemas(...schemas);
        await otel.shutdown();
      },
    };
  },
};
