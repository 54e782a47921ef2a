// Bee-Queue 2 through its own API, for the conformance suite.
import { BeeQueueInstrumentation } from '../../../src/index.js';
import { requireLibrary } from '../../helpers/library.js';
import { connection, queueName } from '../../helpers/redis.js';
import { setupTelemetry } from '../../helpers/sdk.js';
import type { Driver, TestQueue } from '../driver.js';

type BeeQueue = typeof import('bee-queue');

export const beeQueueDriver: Driver = {
  system: 'bee-queue',
  features: {
    propagation: true,
    jobNames: false,
    retryWaitTime: false,
    states: ['waiting', 'active', 'delayed', 'failed', 'completed'],
    oldestAge: true,
    failedOldestAge: false,
  },
  async start(config) {
    const otel = setupTelemetry(new BeeQueueInstrumentation(config));
    const Queue = requireLibrary<BeeQueue>('bee-queue');
    const { host, port } = connection();
    return {
      otel,
      async queue(label, processor, options = {}): Promise<TestQueue> {
        const name = queueName(`bee-${label}`);
        const settings = { redis: { host, port }, activateDelayedJobs: true, removeOnSuccess: false, isWorker: true };
        const queue = new Queue(name, settings);
        await queue.ready();
        let started = false;
        return {
          destination: name,
          async add(job) {
            const created = queue.createJob(job.data).retries((job.attempts ?? 1) - 1);
            if (job.delayMs !== undefined) created.delayUntil(Date.now() + job.delayMs);
            const saved = await created.save();
            return saved.id ?? undefined;
          },
          async work() {
            if (started) return;
            started = true;
            queue.process(options.concurrency ?? 1, (job) => processor({ name: undefined, data: job.data }));
          },
          async close() {
            await queue.destroy().catch(() => {});
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
