import { type Meter, type MeterProvider, type Tracer, type TracerProvider, diag, metrics, trace } from '@opentelemetry/api';
import {
  InstrumentationBase,
  type InstrumentationModuleDefinition,
  InstrumentationNodeModuleDefinition,
} from '@opentelemetry/instrumentation';
import { satisfies } from 'semver';
import type { AnyFunction, MethodPatch } from '../adapters/patch.js';
import { type QueueInstrumentationConfig, type ResolvedConfig, resolveConfig, validOptions } from '../config.js';
import type { JobTelemetry } from '../core/seam.js';
import { QueueTelemetry } from '../core/telemetry.js';
import { SCHEMA_URL } from '../semconv.js';
import { PACKAGE_NAME, PACKAGE_VERSION } from '../version.js';
import { sdkCardinalityLimit } from './sdk-limits.js';

/**
 * What every queue-otel instrumentation shares: validated options, the core telemetry (rebuilt
 * instruments when the meter provider changes) and applying an adapter's method patches.
 */
export abstract class QueueInstrumentationBase<
  Config extends QueueInstrumentationConfig = QueueInstrumentationConfig,
> extends InstrumentationBase<Config> {
  // `declare`: InstrumentationBase's constructor calls setConfig, _updateMetricInstruments and
  // init before this class's fields would be initialised; declared fields are not reset after.
  private declare core: QueueTelemetry | undefined;
  private declare resolved: ResolvedConfig;
  private declare constructed: boolean;
  private declare tracerProvider: TracerProvider | undefined;
  private declare meterProvider: MeterProvider | undefined;

  protected constructor(
    private readonly system: string,
    config: Config | undefined,
  ) {
    // A bad option is reported once through diag and left out, so that its default applies.
    const given = validOptions(config) as Config;
    super(`${PACKAGE_NAME}/${system}`, PACKAGE_VERSION, given);
    this.resolved = resolveConfig(given);
    this.constructed = true;
  }

  /** The core that owns spans and metrics for this instrumentation. */
  protected get telemetry(): QueueTelemetry {
    if (this.core === undefined) {
      const resolved = this.resolved ?? resolveConfig(this._config ?? {});
      const core = new QueueTelemetry(this.system, resolved, this._diag ?? diag);
      core.setTracer(this.currentTracer());
      this.core = core;
      core.setMeter(this.currentMeter(), sdkCardinalityLimit(this.meterProvider));
      if (this.isEnabled()) core.start();
    }
    return this.core;
  }

  /**
   * Options can change after construction; as in the constructor, a bad value is reported once
   * through diag and its default applies.
   */
  override setConfig(config: Config = {} as Config): void {
    if (!this.constructed) {
      super.setConfig(config);
      return;
    }
    const given = validOptions(config) as Config;
    super.setConfig(given);
    this.resolved = resolveConfig(given);
    this.core?.setConfig(this.resolved, this.isEnabled());
  }

  /** Patches the library (when loaded) and starts per-job resource attribution. */
  override enable(): void {
    super.enable();
    // The base constructor enables before this class is set up; the first access starts it then.
    if (this.constructed) this.telemetry.start();
  }

  /** Restores the library's original methods and stops per-job resource attribution. */
  override disable(): void {
    super.disable();
    this.core?.disable();
  }

  override setTracerProvider(tracerProvider: TracerProvider): void {
    super.setTracerProvider(tracerProvider);
    this.tracerProvider = tracerProvider;
    this.core?.setTracer(this.currentTracer());
  }

  override setMeterProvider(meterProvider: MeterProvider): void {
    this.meterProvider = meterProvider;
    super.setMeterProvider(meterProvider);
  }

  /** Called by the base class whenever the meter provider changes. */
  protected override _updateMetricInstruments(): void {
    this.core?.setMeter(this.currentMeter(), sdkCardinalityLimit(this.meterProvider));
  }

  /** Applies an adapter's patches to freshly loaded module exports. */
  protected applyPatches(patches: MethodPatch[]): void {
    for (const patch of patches) {
      const target = patch.target as Record<string, unknown>;
      if (typeof target[patch.method] !== 'function') {
        this._diag.debug(`${patch.method} not found; not patched`);
        continue;
      }
      this._wrap(target, patch.method, patch.wrap as never);
    }
  }

  /**
   * Replaces exported functions of a module, for libraries whose exports are plain functions (an
   * ES module's). Through OpenTelemetry's loader hook the module namespace accepts the new values;
   * a namespace loaded by `require()` (Node's require of an ES module) is read-only, so a copy with
   * the wrapped functions is returned, which require-in-the-middle hands to the application.
   * Returns what the patch callback should return; `restore` puts the originals back where it can.
   */
  protected wrapExports<T extends object>(
    exports: T,
    wrappers: Record<string, (original: AnyFunction) => AnyFunction>,
  ): { exports: T; restore: () => void } {
    const target = exports as Record<string, unknown>;
    const originals: Record<string, unknown> = {};
    const replaced: Record<string, AnyFunction> = {};
    for (const [name, wrap] of Object.entries(wrappers)) {
      const original = target[name];
      if (typeof original !== 'function') continue;
      originals[name] = original;
      replaced[name] = wrap(original as AnyFunction);
    }
    const set = (values: Record<string, unknown>): boolean => {
      for (const [name, value] of Object.entries(values)) {
        try {
          if (!Reflect.set(target, name, value) || target[name] !== value) return false;
        } catch {
          return false;
        }
      }
      return true;
    };
    if (set(replaced)) return { exports, restore: () => void set(originals) };
    return { exports: { ...exports, ...replaced } as T, restore: () => {} };
  }

  /**
   * The load and unload hooks of a module (or one of its files) whose adapter patches methods:
   * `patchesOf` builds the patches for one loaded copy of its exports.
   */
  protected patching<Exports>(patchesOf: (exports: Exports, telemetry: JobTelemetry, version: string | undefined) => MethodPatch[]): {
    patch: (exports: Exports, version?: string) => Exports;
    unpatch: (exports: Exports | undefined, version?: string) => void;
  } {
    return {
      patch: (exports, version) => {
        this.applyPatches(patchesOf(exports, this.telemetry, version));
        return exports;
      },
      unpatch: (exports, version) => {
        if (exports) this.removePatches(patchesOf(exports, this.telemetry, version));
      },
    };
  }

  /**
   * `definitions`, each followed by one that matches every version of the same module and patches
   * nothing: when the loaded version is outside the supported ranges (so OpenTelemetry skips the
   * patching definition, silently), it warns once per version through diag, naming the library,
   * its version and the supported range. The application runs uninstrumented.
   */
  protected withVersionWarnings(definitions: InstrumentationNodeModuleDefinition[]): InstrumentationNodeModuleDefinition[] {
    const all: InstrumentationNodeModuleDefinition[] = [];
    for (const definition of definitions) {
      const { name, supportedVersions } = definition;
      const warned = new Set<string>();
      const warn = (exports: unknown, version?: string): unknown => {
        if (version === undefined || warned.has(version)) return exports;
        if (supportedVersions.some((range) => satisfies(version, range))) return exports;
        warned.add(version);
        this._diag.warn(`${name} ${version} is not supported (supported: ${supportedVersions.join(' || ')}); it is not instrumented`);
        return exports;
      };
      const watcher = new InstrumentationNodeModuleDefinition(name, ['*'], warn);
      // Prereleases (7.0.0-rc.1) are outside the ranges too, and warned about.
      (watcher as InstrumentationModuleDefinition).includePrerelease = true;
      all.push(definition, watcher);
    }
    return all;
  }

  protected removePatches(patches: MethodPatch[]): void {
    for (const patch of patches) this._unwrap(patch.target as Record<string, unknown>, patch.method);
  }

  // The base class asks its providers for a tracer and meter without the schema URL: ask again
  // with it, so backends know which version of the conventions the names follow.
  private currentTracer(): Tracer {
    return (this.tracerProvider ?? trace.getTracerProvider()).getTracer(this.instrumentationName, this.instrumentationVersion, { schemaUrl: SCHEMA_URL });
  }

  private currentMeter(): Meter {
    return (this.meterProvider ?? metrics.getMeterProvider()).getMeter(this.instrumentationName, this.instrumentationVersion, { schemaUrl: SCHEMA_URL });
  }

  protected abstract override init(): InstrumentationModuleDefinition[];
}
