import { InstrumentationNodeModuleDefinition, InstrumentationNodeModuleFile, isWrapped } from '@opentelemetry/instrumentation';
import { type PgBossExports, pgBossPatches } from '../adapters/pg-boss.js';
import { type TimekeeperExports, pgBossTimekeeperPatches, requiredTimekeeper } from '../adapters/pg-boss-schedules.js';
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
    // Schedules are handled in pg-boss's timekeeper (adapters/pg-boss-schedules.ts). Imported
    // through the loader hook, its file is handed over like the main module; required, it is not
    // seen by the hook, and is reached from the main module's folder. Never wrapped twice.
    const timekeeper = this.patching<TimekeeperExports>(pgBossTimekeeperPatches);
    const patchTimekeeper = (exports: TimekeeperExports | undefined, version?: string) => {
      const onSendIt = readTimekeeperMethod(exports);
      if (exports !== undefined && onSendIt !== undefined && !isWrapped(onSendIt)) timekeeper.patch(exports, version);
      return exports;
    };
    const unpatchTimekeeper = (exports: TimekeeperExports | undefined, version?: string) => {
      const onSendIt = readTimekeeperMethod(exports);
      if (exports !== undefined && onSendIt !== undefined && isWrapped(onSendIt)) timekeeper.unpatch(exports, version);
    };
    return this.withVersionWarnings([
      new InstrumentationNodeModuleDefinition(
        'pg-boss',
        SUPPORTED,
        (exports, version) => {
          const patched = patch(exports, version);
          patchTimekeeper(requiredTimekeeper(exports), version);
          return patched;
        },
        (exports, version) => {
          unpatch(exports, version);
          if (exports !== undefined) unpatchTimekeeper(requiredTimekeeper(exports), version);
        },
        [
          new InstrumentationNodeModuleFile(
            'pg-boss/dist/timekeeper.js',
            SUPPORTED,
            (exports: TimekeeperExports, version?: string) => patchTimekeeper(exports, version) as TimekeeperExports,
            unpatchTimekeeper,
          ),
        ],
      ),
    ]);
  }
}

/** The timekeeper's `onSendIt`, to tell whether this copy is already wrapped. */
function readTimekeeperMethod(exports: TimekeeperExports | undefined): (() => unknown) | undefined {
  try {
    const method = (exports?.default?.prototype as { onSendIt?: unknown } | undefined)?.onSendIt;
    return typeof method === 'function' ? (method as () => unknown) : undefined;
  } catch {
    return undefined;
  }
}
