import type { Tracer } from '@opentelemetry/api';
import type { ResolvedConfig } from '../config.js';
import type { Instruments } from './instruments.js';
import type { JobProfiler } from './profiling/profiler.js';
import type { Reporter } from './report.js';
import type { SandboxSampler } from './resources/sandboxes.js';
import type { Tracker } from './tracker.js';

/**
 * What the recorders of the core (attempts, sends, collection) share: the current options,
 * tracer and instruments, the tracker and the fault reporter. Narrow on purpose: a recorder sees
 * this, not the instrumentation's facade.
 */
export interface CoreContext {
  /** `messaging.system`. */
  readonly system: string;
  readonly config: ResolvedConfig;
  /** Undefined until a tracer provider is set. */
  readonly tracer: Tracer | undefined;
  /** Undefined while no usable meter is set. */
  readonly metrics: Instruments | undefined;
  readonly tracker: Tracker;
  /** Whether per-job CPU or memory is measured now. */
  readonly resourcesOn: boolean;
  readonly sandboxes: SandboxSampler;
  /** Undefined unless the `profileJobs` option names jobs to profile. */
  readonly profiler: JobProfiler | undefined;
  readonly report: Reporter;
}
