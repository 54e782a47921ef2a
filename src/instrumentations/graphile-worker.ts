import { InstrumentationNodeModuleDefinition } from '@opentelemetry/instrumentation';
import {
  type GraphileWorkerExports,
  type GraphileWorkerPlugin,
  graphileWorkerExportWrappers,
  graphileWorkerPlugin,
} from '../adapters/graphile-worker.js';
import type { QueueInstrumentationConfig } from '../config.js';
import { PACKAGE_VERSION } from '../version.js';
import { QueueInstrumentationBase } from './base.js';

/** graphile-worker versions whose internals the adapter was written and tested against. */
const SUPPORTED = ['>=0.18.0 <0.19'];

/**
 * OpenTelemetry instrumentation for graphile-worker 0.18 (`messaging.system` = `graphile-worker`,
 * `messaging.destination.name` = the worker schema, `queue.job.name` = the task identifier). Every
 * runner gets `process` spans and job metrics for its tasks, `addJob`/`addJobs` get `send` spans,
 * and the schema's job states are read once per cluster; nothing in the application changes.
 * graphile-worker is an ES module: `import` it with OpenTelemetry's loader hook, or `require` it
 * (Node 22.12+).
 *
 * @example
 * ```ts
 * new NodeSDK({ instrumentations: [new GraphileWorkerInstrumentation()] }).start();
 * ```
 */
export class GraphileWorkerInstrumentation extends QueueInstrumentationBase {
  private declare plugin: GraphileWorkerPlugin | undefined;
  private declare restore: (() => void) | undefined;

  /** @param config - options; a wrong one is reported once through `diag`, naming it, and its default applies. */
  constructor(config?: QueueInstrumentationConfig) {
    super('graphile-worker', config);
  }

  protected override init(): InstrumentationNodeModuleDefinition[] {
    return this.withVersionWarnings([
      new InstrumentationNodeModuleDefinition(
        'graphile-worker',
        SUPPORTED,
        (exports: GraphileWorkerExports) => {
          const active = () => this.isEnabled();
          const plugins = exports.WorkerPreset?.plugins;
          if (Array.isArray(plugins)) {
            this.plugin ??= graphileWorkerPlugin(this.telemetry, PACKAGE_VERSION, active);
            if (!plugins.includes(this.plugin)) plugins.push(this.plugin);
          } else {
            this._diag.warn('graphile-worker WorkerPreset.plugins not found; jobs are not instrumented');
          }
          const wrapped = this.wrapExports(exports, graphileWorkerExportWrappers(this.telemetry, active));
          this.restore = wrapped.restore;
          return wrapped.exports;
        },
        (exports: GraphileWorkerExports | undefined) => {
          const plugins = exports?.WorkerPreset?.plugins;
          if (Array.isArray(plugins) && this.plugin !== undefined) {
            const at = plugins.indexOf(this.plugin);
            if (at >= 0) plugins.splice(at, 1);
          }
          this.restore?.();
          this.restore = undefined;
        },
      ),
    ]);
  }
}
