// Bull 4 through its own API, for the conformance suite.
import { BullInstrumentation } from '../../../src/index.js';
import { requireLibrary } from '../../helpers/library.js';
import { connection, queueName } from '../../helpers/redis.js';
import { setupTelemetry } from '../../helpers/sdk.js';
import type { Driver, TestQueue } from '../driver.js';

type Bull = typeof import('bull');

export const bullDriver: Driver = {
  system: 'bull',
  features: {
    propagation: true,
    jobNames: true,
    retryWaitTime: false,
    states: ['waiting', 'active', 'delayed', 'paused', 'failed', 'completed'],
    oldestAge: true,
    failedOldestAge: true,
  },
  async start(config) {
    const otel = setupTelemetry(new BullInstrumentation(config));
    const Queue = requireLibrary<Bull>('bull');
    const { host, port } = connection();
    return {
      otel,
      async queue(label, processor, options = {}): Promise<TestQueue> {
        const name = queueName(`bull-${label}`);
        const queue = new Queue(name, { redis: { host, port } });
        let started = false;
        return {
          destination: name,
          async add(job) {
            const added = await queue.add(job.name, job.data, {
              attempts: job.attempts ?? 1,
              ...(job.delayMs !== undefined ? { delay: job.delayMs } : {}),
            });
            return String(added.id);
          },
          async work() {
            if (started) return;
            started = true;
            void queue.process('*', options.concurrency ?? 1, (job) => processor({ name: job.name, data: job.data }));
          },
          async close() {
            await queue.obliterate({ force: true }).catch(() => {});
            await queue.close();
          },
        };
      },
      async shutdown() {
        await otel.shutdown();
      },
    };
  },
};
