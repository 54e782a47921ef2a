import type { DiagLogger, Meter, Tracer } from '@opentelemetry/api';
import type { ResolvedConfig } from '../config.js';
import { type Attempt, AttemptRecorder } from './attempts.js';
import { observe } from './collection.js';
import type { CoreContext } from './context.js';
import { Instruments } from './instruments.js';
import { JobProfiler } from './profiling/profiler.js';
import { QueueStats } from './queue-stats.js';
import { Reporter } from './report.js';
import { acquireLoopAttribution } from './resources/loop-attribution.js';
import { SandboxSampler } from './resources/sandboxes.js';
import { ScheduleRecorder } from './schedules.js';
import type {
  AttemptEnd,
  AttemptFacts,
  AttemptHandle,
  Carrier,
  IsolateHandle,
  JobTelemetry,
  QueueEntry,
  QueueStateSource,
  ScheduleFacts,
  SendFacts,
} from './seam.js';
import { SendRecorder } from './sends.js';
import { type Limits, Tracker } from './tracker.js';

/**
 * The core of one instrumentation: it owns every span and metric, and is what its adapter reports
 * to ({@link JobTelemetry}). Adapters hand it plain facts about jobs and never touch OpenTelemetry.
 */
export class QueueTelemetry implements JobTelemetry, CoreContext {
  readonly tracker: Tracker;
  readonly report: Reporter;
  readonly sandboxes: SandboxSampler;
  private readonly attempts: AttemptRecorder;
  private readonly schedules: ScheduleRecorder;
  private readonly sends: SendRecorder;
  private readonly stats: QueueStats;
  private jobProfiler: JobProfiler | undefined;
  private instruments: Instruments | undefined;
  private tracerRef: Tracer | undefined;
  private releaseLoop: (() => void) | undefined;
  private enabled = false;
  /** The SDK's cardinality limit as read from the meter provider, when it could be read. */
  private sdkCardinalityLimit: number | undefined;
  /** The budgets the tracker reads, from the options and that limit; undefined when either changed. */
  private limits: Limits | undefined;

  constructor(
    readonly system: string,
    private currentConfig: ResolvedConfig,
    diag: DiagLogger,
  ) {
    this.report = new Reporter(diag);
    this.tracker = new Tracker(
      system,
      // Read on every job (name length) and every new set: built once per configuration or meter.
      () => (this.limits ??= { ...this.currentConfig, cardinalityLimit: this.cardinalityLimit }),
      (key, message) => this.report.warnOnce(key, message),
    );
    this.sandboxes = new SandboxSampler(this.report);
    this.jobProfiler = this.profilerFor(currentConfig);
    this.schedules = new ScheduleRecorder(this);
    this.attempts = new AttemptRecorder(this, this.schedules);
    this.sends = new SendRecorder(this);
    this.stats = new QueueStats(
      () => ({
        intervalMs: this.currentConfig.queueStateInterval,
        timeoutMs: this.currentConfig.queueStateTimeout,
        leader: this.currentConfig.queueStateLeader,
      }),
      diag,
    );
  }

  // ---- CoreContext ------------------------------------------------------------------------------

  get config(): ResolvedConfig {
    return this.currentConfig;
  }

  get tracer(): Tracer | undefined {
    return this.tracerRef;
  }

  /** Current instruments, or undefined while no usable meter is set. */
  get metrics(): Instruments | undefined {
    return this.instruments;
  }

  get profiler(): JobProfiler | undefined {
    return this.jobProfiler;
  }

  get resourcesOn(): boolean {
    return this.releaseLoop !== undefined;
  }

  /** The limit the budgets keep under: the option, or the SDK's own when that is lower. */
  get cardinalityLimit(): number {
    const option = this.currentConfig.cardinalityLimit;
    return this.sdkCardinalityLimit === undefined ? option : Math.min(option, this.sdkCardinalityLimit);
  }

  // ---- JobTelemetry (what adapters use) --------------------------------------------------------

  get queueState(): boolean {
    return this.currentConfig.queueState;
  }

  get listedQueues(): readonly QueueEntry[] {
    return this.currentConfig.queues;
  }

  startAttempt(facts: () => AttemptFacts): AttemptHandle | undefined {
    return this.attempts.start(facts) as AttemptHandle | undefined;
  }

  runAttempt<T>(attempt: AttemptHandle, processor: () => T, sandboxed: boolean): T {
    return this.attempts.runProcessor(attempt as unknown as Attempt, processor, sandboxed);
  }

  endAttempt(attempt: AttemptHandle, end: AttemptEnd): void {
    this.attempts.end(attempt as unknown as Attempt, end);
  }

  sandboxAssigned(handle: IsolateHandle): Promise<void> {
    return this.attempts.attachIsolate(handle);
  }

  failLibrarySpan(error: unknown): void {
    this.attempts.failActiveSpan(error);
  }

  send<T>(facts: () => SendFacts, add: (carrierFor: (job: number) => Carrier | undefined) => T): T {
    return this.sends.run(facts, add);
  }

  watchQueue(queue: string, source: () => QueueStateSource | undefined): void {
    if (!this.currentConfig.queueState || this.stats.has(queue)) return;
    try {
      const s = source();
      if (s !== undefined) this.stats.register(queue, this.tracker.queue(queue), s);
    } catch (error) {
      this.report.error(`could not watch the state of queue "${queue}"`, error);
    }
  }

  workerStarted(queue: string, concurrency: () => number): () => void {
    try {
      return this.tracker.addWorker(queue, concurrency);
    } catch (error) {
      this.report.error('could not register a worker', error);
      return () => {};
    }
  }

  stalled(queue: string, count = 1): void {
    try {
      this.instruments?.stalled.add(count, this.tracker.queue(queue).attributes);
    } catch (error) {
      this.report.error('could not record stalled jobs', error);
    }
  }

  rateLimited(queue: string, seconds: number): void {
    try {
      if (Number.isFinite(seconds) && seconds >= 0) this.instruments?.rateLimitDuration.record(seconds, this.tracker.queue(queue).attributes);
    } catch (error) {
      this.report.error('could not record a rate-limit wait', error);
    }
  }

  scheduleRun(queue: string, schedule: ScheduleFacts): void {
    try {
      this.schedules.ran(queue, schedule);
    } catch (error) {
      this.report.error('could not record a scheduled run', error);
    }
  }

  scheduleMissed(queue: string, name: string): void {
    try {
      this.schedules.missed(queue, name);
    } catch (error) {
      this.report.error('could not record a missed scheduled run', error);
    }
  }

  warn(message: string, error?: unknown): void {
    this.report.error(message, error);
  }

  // ---- lifecycle (what the instrumentation class uses) -----------------------------------------

  /**
   * New options apply to the next job; new budgets, to sets not made yet.
   * `enabled`: whether the instrumentation is on, so attribution follows the new options.
   */
  setConfig(config: ResolvedConfig, enabled: boolean): void {
    this.currentConfig = config;
    this.limits = undefined;
    this.jobProfiler = this.profilerFor(config);
    if (enabled) this.start();
  }

  /** Starts what runs while the instrumentation is enabled: the event-loop attribution hook. */
  start(): void {
    this.enabled = true;
    this.stop();
    const { jobCpu, jobMemory } = this.currentConfig;
    // A profile keeps the samples of the job's own slices: profiling needs the slices too.
    if (!jobCpu && !jobMemory && this.jobProfiler === undefined) return;
    try {
      this.releaseLoop = acquireLoopAttribution(jobMemory);
    } catch (error) {
      this.report.error('could not start per-job resource attribution', error);
    }
  }

  /** The instrumentation is disabled: nothing of it keeps running, and queue state is not read. */
  disable(): void {
    this.enabled = false;
    this.stop();
    this.stats.stop();
  }

  setTracer(tracer: Tracer): void {
    this.tracerRef = tracer;
  }

  /**
   * (Re)creates the instruments on a new meter; a meter that throws leaves metrics off.
   * `sdkCardinalityLimit`: the limit the meter provider's SDK applies, when it can be read.
   */
  setMeter(meter: Meter, sdkCardinalityLimit?: number): void {
    this.sdkCardinalityLimit = sdkCardinalityLimit;
    this.limits = undefined;
    try {
      this.instruments?.dispose();
    } catch (error) {
      this.report.error('could not remove the previous metric callback', error);
    }
    this.instruments = undefined;
    try {
      this.instruments = new Instruments(meter, (result, live) =>
        observe(this, this.currentConfig.queueState && this.enabled ? this.stats : undefined, result, live),
      );
    } catch (error) {
      this.report.error('could not create metric instruments; metrics are off', error);
    }
  }

  /** Profiles are taken only when `profileJobs` names jobs. */
  private profilerFor(config: ResolvedConfig): JobProfiler | undefined {
    return config.profileJobs.length > 0 ? new JobProfiler(config, this.report) : undefined;
  }

  private stop(): void {
    this.releaseLoop?.();
    this.releaseLoop = undefined;
  }
}
