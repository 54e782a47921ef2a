import { InstrumentationNodeModuleDefinition, InstrumentationNodeModuleFile } from '@opentelemetry/instrumentation';
import { type BullExports, bullChildPoolPatches, bullPatches } from '../adapters/bull.js';
import type { QueueInstrumentationConfig } from '../config.js';
import { QueueInstrumentationBase } from './base.js';

/** bull versions whose internals the adapter was written and tested against. */
const SUPPORTED = ['>=4.0.0 <5'];

/**
 * OpenTelemetry instrumentation for Bull 4 (`messaging.system` = `bull`). Every `Queue` created
 * after it is enabled gets `process` spans and job metrics for its processors, `send` spans for
 * `add` and `addBulk`, and its state read once per cluster; nothing in the application changes.
 *
 * @example
 * ```ts
 * new NodeSDK({ instrumentations: [new BullInstrumentation()] }).start();
 * ```
 */
export class BullInstrumentation extends QueueInstrumentationBase {
  /** @param config - options; a wrong one is reported once through `diag`, naming it, and its default applies. */
  constructor(config?: QueueInstrumentationConfig) {
    super('bull', config);
  }

  protected override init(): InstrumentationNodeModuleDefinition[] {
    const { patch, unpatch } = this.patching<BullExports>(bullPatches);
    const pool = this.patching<unknown>(bullChildPoolPatches);
    return this.withVersionWarnings([
      new InstrumentationNodeModuleDefinition('bull', SUPPORTED, patch, unpatch, [
        new InstrumentationNodeModuleFile('bull/lib/process/child-pool.js', SUPPORTED, pool.patch, pool.unpatch),
      ]),
    ]);
  }
}
