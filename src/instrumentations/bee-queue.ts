import { InstrumentationNodeModuleDefinition, InstrumentationNodeModuleFile } from '@opentelemetry/instrumentation';
import { type BeeQueueExports, beeJobPatches, beeQueuePatches } from '../adapters/bee-queue.js';
import type { QueueInstrumentationConfig } from '../config.js';
import { QueueInstrumentationBase } from './base.js';

/** bee-queue versions whose internals the adapter was written and tested against. */
const SUPPORTED = ['>=2.0.0 <3'];

/**
 * OpenTelemetry instrumentation for Bee-Queue 2 (`messaging.system` = `bee-queue`). Every queue's
 * processor gets `process` spans and job metrics, `Job.save` and `Queue.saveAll` get `send` spans,
 * and each queue's state is read once per cluster; nothing in the application changes.
 *
 * @example
 * ```ts
 * new NodeSDK({ instrumentations: [new BeeQueueInstrumentation()] }).start();
 * ```
 */
export class BeeQueueInstrumentation extends QueueInstrumentationBase {
  /** @param config - options; a wrong one is reported once through `diag`, naming it, and its default applies. */
  constructor(config?: QueueInstrumentationConfig) {
    super('bee-queue', config);
  }

  protected override init(): InstrumentationNodeModuleDefinition[] {
    const queue = this.patching<BeeQueueExports>(beeQueuePatches);
    const job = this.patching<BeeQueueExports>(beeJobPatches);
    return this.withVersionWarnings([
      new InstrumentationNodeModuleDefinition('bee-queue', SUPPORTED, queue.patch, queue.unpatch, [
        new InstrumentationNodeModuleFile('bee-queue/lib/job.js', SUPPORTED, job.patch, job.unpatch),
      ]),
    ]);
  }
}
