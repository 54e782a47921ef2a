export { BullMQInstrumentation } from './instrumentations/bullmq.js';
export { BullInstrumentation } from './instrumentations/bull.js';
export { BeeQueueInstrumentation } from './instrumentations/bee-queue.js';
export { PgBossInstrumentation } from './instrumentations/pg-boss.js';
export { GraphileWorkerInstrumentation } from './instrumentations/graphile-worker.js';
export { getQueueInstrumentations } from './instrumentations/all.js';
export type { QueueInstrumentationBase } from './instrumentations/base.js';
export type {
  BullMQInstrumentationConfig,
  QueueInstrumentationConfig,
  QueueEntry,
  ProcessHookInfo,
  SendHookInfo,
} from './config.js';
