export { BullMQInstrumentation } from './instrumentations/bullmq.js';
export type {
  BullMQInstrumentationConfig,
  QueueInstrumentationConfig,
  ProcessHookInfo,
  SendHookInfo,
} from './config.js';
