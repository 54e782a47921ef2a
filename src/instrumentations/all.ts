import type { QueueInstrumentationConfig } from '../config.js';
import type { QueueInstrumentationBase } from './base.js';
import { BeeQueueInstrumentation } from './bee-queue.js';
import { BullInstrumentation } from './bull.js';
import { BullMQInstrumentation } from './bullmq.js';
import { GraphileWorkerInstrumentation } from './graphile-worker.js';
import { PgBossInstrumentation } from './pg-boss.js';

/**
 * Every queue-otel instrumentation, each with the same options: what `queue-otel/register` uses,
 * and the one-liner for an SDK setup. A queue library that is not installed costs nothing: its
 * instrumentation only patches the library when it is loaded.
 *
 * @example
 * ```ts
 * new NodeSDK({ instrumentations: [...getQueueInstrumentations()] }).start();
 * ```
 */
export function getQueueInstrumentations(config?: QueueInstrumentationConfig): QueueInstrumentationBase[] {
  return [
    new BullMQInstrumentation(config),
    new BullInstrumentation(config),
    new BeeQueueInstrumentation(config),
    new PgBossInstrumentation(config),
    new GraphileWorkerInstrumentation(config),
  ];
}
