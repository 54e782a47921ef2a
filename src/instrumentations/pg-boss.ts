import { InstrumentationNodeModuleDefinition } from '@opentelemetry/instrumentation';
import { type PgBossExports, pgBossPatches } from '../adapters/pg-boss.js';
import type { QueueInstrumentationConfig } from '../config.js';
import { QueueInstrumentationBase } from './base.js';

/** pg-boss versions whose internals the adapter was written and tested against. */
const SUPPORTED = ['>=12.0.0 <13'];

/**
 * OpenTelemetry instrumentation for pg-boss 12 (`messaging.system` = `pg-boss`). pg-boss makes its
 * own `send` and `process` spans and `messaging.*` metrics (its `openTelemetry` option, on by
 * default): queue-otel keeps them, annotates its process spans, and adds what they lack (wait time,
 * attempts, busy time, active jobs, concurrency, per-job CPU and memory, queue depth and oldest
 * ages). With pg-boss's telemetry off, queue-otel makes the spans and messaging metrics itself.
 * pg-boss 12 is an ES module: `import` it with OpenTelemetry's loader hook, or `require` it
 * (Node 22.12+).
 *
 * @example
 * ```ts
 * new NodeSDK({ instrumentations: [new PgBossInstrumentation()] }).start();
 * ```
 */
export class PgBossInstrumentation extends QueueInstrumentationBase {
  /** @param config - options; a wrong one is reported once through `diag`, naming it, and its default applies. */
  constructor(config?: QueueInstrumentationConfig) {
    super('pg-boss', config);
  }

  protected override init(): InstrumentationNodeModuleDefinition[] {
    const { patch, unpatch } = this.patching<PgBossExports>(pgBossPatches);
    return [new InstrumentationNodeModuleDefinition('pg-boss', SUPPORTED, patch, unpatch)];
  }
}
