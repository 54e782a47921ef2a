import { InstrumentationNodeModuleDefinition } from '@opentelemetry/instrumentation';
import { type BullMQExports, bullmqPatches } from '../adapters/bullmq.js';
import type { BullMQInstrumentationConfig } from '../config.js';
import { QueueInstrumentationBase } from './base.js';

/** bullmq versions whose internals the adapter was written and tested against. */
const SUPPORTED = ['>=5.0.0 <7'];

/**
 * OpenTelemetry instrumentation for BullMQ 5 and 6. Every `Worker`, `Queue` and `FlowProducer`
 * gets spans and metrics; nothing in the application changes.
 *
 * @example
 * ```ts
 * new NodeSDK({ instrumentations: [new BullMQInstrumentation()] }).start();
 * ```
 */
export class BullMQInstrumentation extends QueueInstrumentationBase<BullMQInstrumentationConfig> {
  /** @param config - options; a wrong one is reported once through `diag`, naming it, and its default applies. */
  constructor(config?: BullMQInstrumentationConfig) {
    super('bullmq', config);
  }

  protected override init(): InstrumentationNodeModuleDefinition[] {
    const { patch, unpatch } = this.patching<BullMQExports>(bullmqPatches);
    return this.withVersionWarnings([new InstrumentationNodeModuleDefinition('bullmq', SUPPORTED, patch, unpatch)]);
  }
}
