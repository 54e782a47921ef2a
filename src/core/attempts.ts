import {
  type Attributes,
  type Context,
  type Link,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  context,
  trace,
} from '@opentelemetry/api';
import {
  ATTR_MESSAGING_DESTINATION_NAME,
  ATTR_MESSAGING_MESSAGE_ID,
  ATTR_MESSAGING_OPERATION_NAME,
  ATTR_MESSAGING_OPERATION_TYPE,
  ATTR_MESSAGING_SYSTEM,
  ATTR_QUEUE_JOB_ATTEMPT,
  ATTR_QUEUE_JOB_CPU_TIME,
  ATTR_QUEUE_JOB_DEFERRAL,
  ATTR_QUEUE_JOB_MEMORY_PEAK,
  ATTR_QUEUE_JOB_NAME,
  ATTR_QUEUE_JOB_OUTCOME,
  ATTR_QUEUE_JOB_PROFILE_PATH,
  ATTR_QUEUE_JOB_WAIT_DURATION,
  ATTR_QUEUE_SCHEDULE_LAG,
  ATTR_QUEUE_SCHEDULE_NAME,
  OPERATION_PROCESS,
} from '../semconv.js';
import { producerContext } from './carriers.js';
import type { CoreContext } from './context.js';
import { errorType } from './error-type.js';
import { callHook } from './hooks.js';
import type { AttemptProfile } from './profiling/profiler.js';
import { type Isolate, type IsolateReading, toIsolate } from './resources/isolates.js';
import { type LoopTenant, activeTenant, releaseTenant, runAsSlice, runWithTenant } from './resources/loop-attribution.js';
import { ScheduleRecorder } from './schedules.js';
import type { AttemptEnd, AttemptFacts, IsolateHandle } from './seam.js';
import type { JobSeries } from './series.js';
import { markFailed, spanText } from './spans.js';

/** Links to related jobs' creation (a flow parent's children) a process span carries at most. */
const MAX_RELATED_LINKS = 32;

/** One running attempt: its span and what it has used so far. */
export class Attempt implements LoopTenant {
  /** Event-loop time of its slices, or CPU time of its sandbox (ms). */
  cpuMs = 0;
  /** Heap bytes attributed to it now (shared loop). */
  heldBytes = 0;
  /** The most memory it was seen to hold. */
  peakBytes = 0;
  /** Heap bytes it allocated since the last drop of the heap was seen. */
  recentBytes = 0;
  ended = false;
  /** Its code runs in a sandboxed process or thread, not on this loop. */
  isolated = false;
  isolate: Isolate | undefined;
  /** The sandbox's cumulative CPU when the job was handed to it. */
  isolateCpuBase: number | undefined;
  /** Its CPU profile while it runs (option `profileJobs`), then the file it is written to. */
  profile: AttemptProfile | undefined;
  profilePath: string | undefined;

  constructor(
    readonly series: JobSeries,
    readonly startedAt: number,
    readonly span: Span | undefined,
    /** Context to run the job in (the span's), or undefined to leave the context alone. */
    readonly context: Context | undefined,
    /** The library's own span for this attempt, annotated but never ended here. */
    readonly librarySpan: Span | undefined,
    /** False when the library records the messaging process metrics itself. */
    readonly messagingMetrics: boolean,
  ) {}

  get attributable(): boolean {
    return !this.ended && !this.isolated;
  }

  addLoopTime(ms: number): void {
    this.cpuMs += ms;
    this.series.loopMs += ms;
  }

  addHeap(delta: number): void {
    // A job cannot hold less than nothing.
    const held = Math.max(0, this.heldBytes + delta);
    this.series.heldBytes += held - this.heldBytes;
    this.heldBytes = held;
    if (held > this.peakBytes) this.peakBytes = held;
  }

  /** CPU of its sandbox since the job was handed over, from one reading. */
  isolateCpu(reading: IsolateReading): number | undefined {
    return reading.cpuMs === undefined || this.isolateCpuBase === undefined
      ? undefined
      : Math.max(0, reading.cpuMs - this.isolateCpuBase);
  }
}

/** Starts and ends job attempts: the `process` span, the tracker and the per-attempt metrics. */
export class AttemptRecorder {
  constructor(
    private readonly core: CoreContext,
    private readonly schedules = new ScheduleRecorder(core),
  ) {}

  /** Returns undefined (and the job runs untouched) if anything in here fails. */
  start(read: () => AttemptFacts): Attempt | undefined {
    const core = this.core;
    let facts: AttemptFacts;
    try {
      facts = read();
    } catch (error) {
      core.report.error('could not read a job\'s facts; it runs uninstrumented', error);
      return undefined;
    }
    let span: Span | undefined;
    try {
      const now = performance.now();
      const limit = core.config.maxNameLength;
      const queue = facts.queue;
      const jobName = typeof facts.jobName === 'string' ? facts.jobName : undefined;
      const series = core.tracker.series(queue, jobName);
      const attempt = positiveInteger(facts.attempt);
      let waitS: number | undefined;
      const readyAt = facts.readyAt;
      if (typeof readyAt === 'number' && Number.isFinite(readyAt)) {
        // Clocks of producer and worker machines differ; a negative wait is skew, not time.
        waitS = Math.max(0, Date.now() - readyAt) / 1000;
        core.metrics?.waitDuration.record(waitS, series.attributes);
      }
      // A run of a schedule: how late it started against the time it was due.
      const schedule = facts.schedule === undefined ? undefined : this.schedules.ran(queue, facts.schedule);
      let ctx: Context | undefined;
      const tracer = core.tracer;
      if (facts.traced && tracer !== undefined) {
        const destination = spanText(queue, limit);
        const attributes: Attributes = {
          [ATTR_MESSAGING_SYSTEM]: core.system,
          [ATTR_MESSAGING_DESTINATION_NAME]: destination,
          [ATTR_MESSAGING_OPERATION_NAME]: OPERATION_PROCESS,
          [ATTR_MESSAGING_OPERATION_TYPE]: OPERATION_PROCESS,
        };
        if (attempt !== undefined) attributes[ATTR_QUEUE_JOB_ATTEMPT] = attempt;
        if (jobName !== undefined) attributes[ATTR_QUEUE_JOB_NAME] = spanText(jobName, limit);
        if (typeof facts.jobId === 'string') attributes[ATTR_MESSAGING_MESSAGE_ID] = spanText(facts.jobId, limit);
        if (waitS !== undefined) attributes[ATTR_QUEUE_JOB_WAIT_DURATION] = waitS;
        if (schedule !== undefined) {
          attributes[ATTR_QUEUE_SCHEDULE_NAME] = spanText(schedule.name, limit);
          attributes[ATTR_QUEUE_SCHEDULE_LAG] = schedule.lagS;
        }
        // A worker loop started inside some span would otherwise parent every job to it forever:
        // each attempt starts from the root, or from the producer when asked to.
        let parent: Context = ROOT_CONTEXT;
        let links: Link[] | undefined;
        const producer = producerContext(facts.carrier);
        if (producer !== undefined) {
          if (core.config.useProducerSpanAsParent) parent = producer.context;
          else links = [{ context: producer.spanContext }];
        }
        if (Array.isArray(facts.links)) {
          for (const related of facts.links.slice(0, MAX_RELATED_LINKS)) {
            const context = producerContext(related);
            if (context !== undefined) (links ??= []).push({ context: context.spanContext });
          }
        }
        span = tracer.startSpan(`${OPERATION_PROCESS} ${destination}`, { kind: SpanKind.CONSUMER, attributes, links }, parent);
        ctx = trace.setSpan(parent, span);
        const hook = core.config.processHook;
        if (hook !== undefined) callHook(core.report, 'processHook', () => hook(span as Span, { queue, job: facts.job }));
      }
      let library: Span | undefined;
      if (!facts.traced && facts.annotateActiveSpan === true) {
        const active = trace.getActiveSpan();
        if (active !== undefined && active.isRecording()) {
          library = active;
          if (jobName !== undefined) active.setAttribute(ATTR_QUEUE_JOB_NAME, spanText(jobName, limit));
          if (attempt !== undefined) active.setAttribute(ATTR_QUEUE_JOB_ATTEMPT, attempt);
          if (waitS !== undefined) active.setAttribute(ATTR_QUEUE_JOB_WAIT_DURATION, waitS);
          if (schedule !== undefined) {
            active.setAttribute(ATTR_QUEUE_SCHEDULE_NAME, spanText(schedule.name, limit));
            active.setAttribute(ATTR_QUEUE_SCHEDULE_LAG, schedule.lagS);
          }
        }
      }
      const messagingMetrics = facts.nativeMessagingMetrics !== true;
      // Nothing below throws: from here the attempt is counted as running until it ends.
      const running = new Attempt(series, now, span, ctx, library, messagingMetrics);
      series.started(now);
      if (messagingMetrics) series.delivered++;
      series.runningAttempts.add(running);
      return running;
    } catch (error) {
      endQuietly(span);
      core.report.error('could not start telemetry for a job; it runs uninstrumented', error);
      return undefined;
    }
  }

  /**
   * Runs the job's processor in the attempt's context, so spans it starts are its children and,
   * with resource attribution on, its continuations on this loop are counted as its slices.
   * `isolated`: the processor hands the job to a sandboxed process or thread.
   */
  runProcessor<T>(attempt: Attempt, fn: () => T, isolated: boolean): T {
    attempt.isolated = isolated;
    // Profiling is off unless `profileJobs` names jobs: one check here, and one when it ends.
    if (this.core.profiler !== undefined) this.beginProfile(attempt, isolated);
    if (!this.core.resourcesOn) {
      return attempt.context === undefined ? fn() : context.with(attempt.context, fn);
    }
    const run = isolated ? fn : () => runAsSlice(attempt, fn);
    const ctx = attempt.context;
    return runWithTenant(attempt, ctx === undefined ? run : () => context.with(ctx, run));
  }

  /**
   * Tells the attempt running in the active context which sandbox got its job, and takes the
   * sandbox's CPU baseline before the job is handed over (an asynchronous read for a thread,
   * bounded to 200 ms). Never rejects.
   */
  async attachIsolate(handle: IsolateHandle): Promise<void> {
    try {
      const attempt = activeTenant();
      if (!(attempt instanceof Attempt) || attempt.ended || !this.core.resourcesOn) return;
      attempt.profile?.sandbox(handle);
      const isolate = toIsolate(handle);
      if (isolate === undefined) return;
      attempt.isolate = isolate;
      attempt.isolateCpuBase =
        isolate.readCpu !== undefined ? await withTimeout(isolate.readCpu(), 200) : isolate.readNow().cpuMs;
      this.core.sandboxes.add(attempt);
    } catch (error) {
      this.core.report.error('could not read a sandboxed job\'s process or thread', error);
    }
  }

  /** Ends an attempt once; what it recorded and its span end even if part of it fails. */
  end(attempt: Attempt, end: AttemptEnd): void {
    if (attempt.ended) return;
    const now = performance.now();
    const { series } = attempt;
    attempt.ended = true;
    if (attempt.profile !== undefined) this.endProfile(attempt);
    releaseTenant(attempt);
    series.heldBytes -= attempt.heldBytes;
    series.runningAttempts.delete(attempt);
    series.ended(attempt.startedAt, now);
    const core = this.core;
    let type: string | undefined;
    try {
      // A deferral is not a failure: no error type, whatever the library threw to defer.
      const deferred = end.outcome === 'deferred';
      type = !deferred && (end.threw === true || end.error !== undefined) ? errorType(end.error) : undefined;
      const metrics = core.metrics;
      if (metrics !== undefined) {
        const attributes = series.outcomeAttributes(end.outcome, type, deferred ? end.deferral : undefined);
        if (attempt.messagingMetrics) metrics.processDuration.record((now - attempt.startedAt) / 1000, attributes);
        const made = positiveInteger(end.attemptsMade);
        if (made !== undefined && (end.outcome === 'completed' || end.outcome === 'failed')) {
          // Attempts carry no error type: without one, the set just looked up is that set.
          metrics.attempts.record(made, type === undefined ? attributes : series.outcomeAttributes(end.outcome, undefined));
        }
      }
    } catch (error) {
      core.report.error('could not record the end of a job attempt', error);
    }
    const isolate = attempt.isolate;
    if (isolate === undefined) {
      this.finish(attempt, end, type);
      return;
    }
    core.sandboxes.delete(attempt);
    const settle = (reading: IsolateReading, memoryBytes: number | undefined) => {
      const cpu = attempt.isolateCpu(reading);
      if (cpu !== undefined) {
        attempt.cpuMs = cpu;
        series.loopMs += cpu; // its CPU now counts as done work of the series
      }
      const memory = memoryBytes ?? reading.memoryBytes;
      if (memory !== undefined) attempt.peakBytes = Math.max(attempt.peakBytes, memory);
    };
    if (isolate.readCpu === undefined && isolate.readMemory === undefined) {
      try {
        settle(isolate.readNow(), undefined);
      } catch (error) {
        core.report.error('could not read a sandboxed job\'s process or thread', error);
      }
      this.finish(attempt, end, type);
      return;
    }
    // A thread is read asynchronously; the span and the peak wait for it (bounded).
    void Promise.all([
      isolate.readCpu === undefined ? undefined : withTimeout(isolate.readCpu(), 500),
      isolate.readMemory === undefined ? undefined : withTimeout(isolate.readMemory(), 500),
    ])
      .then(([, memory]) => settle(isolate.readNow(), memory))
      .catch((error: unknown) => core.report.error('could not read a sandboxed job\'s process or thread', error))
      .finally(() => this.finish(attempt, end, type));
  }

  /** Records what the attempt used and ends its span (always, whatever fails before). */
  private finish(attempt: Attempt, end: AttemptEnd, type: string | undefined): void {
    const core = this.core;
    const { span } = attempt;
    try {
      const measured = core.resourcesOn && (attempt.isolate !== undefined || !attempt.isolated);
      const { jobCpu, jobMemory } = core.config;
      if (measured && jobMemory) core.metrics?.memoryPeak.record(attempt.peakBytes, attempt.series.attributes);
      const annotate = (target: Span | undefined) => {
        if (target === undefined || !target.isRecording()) return;
        target.setAttribute(ATTR_QUEUE_JOB_OUTCOME, end.outcome);
        if (end.outcome === 'deferred' && end.deferral !== undefined) target.setAttribute(ATTR_QUEUE_JOB_DEFERRAL, end.deferral);
        if (measured && jobCpu) target.setAttribute(ATTR_QUEUE_JOB_CPU_TIME, attempt.cpuMs / 1000);
        if (measured && jobMemory) target.setAttribute(ATTR_QUEUE_JOB_MEMORY_PEAK, attempt.peakBytes);
        if (attempt.profilePath !== undefined) target.setAttribute(ATTR_QUEUE_JOB_PROFILE_PATH, attempt.profilePath);
      };
      annotate(span);
      annotate(attempt.librarySpan);
      if (span !== undefined && type !== undefined) markFailed(span, end.error, type, core.config.maxNameLength);
    } catch (error) {
      core.report.error('could not record the end of a job attempt', error);
    } finally {
      endQuietly(span);
    }
  }

  /** Starts the attempt's CPU profile if it is one to profile (profiling/profiler.ts). */
  private beginProfile(attempt: Attempt, isolated: boolean): void {
    const core = this.core;
    try {
      const { attributes, jobName } = attempt.series;
      attempt.profile = core.profiler?.begin(
        attempt,
        { system: core.system, queue: String(attributes[ATTR_MESSAGING_DESTINATION_NAME]), jobName },
        isolated,
      );
    } catch (error) {
      core.report.error('could not start a job profile', error);
    }
  }

  /** Stops the attempt's profile; its file goes on the span. */
  private endProfile(attempt: Attempt): void {
    try {
      attempt.profilePath = attempt.profile?.end();
    } catch (error) {
      this.core.report.error('could not end a job profile', error);
    }
    attempt.profile = undefined;
  }

  /**
   * Marks the active span as failed: for an attempt whose span the queue library made itself
   * (its native telemetry), which records the exception but leaves the status unset.
   */
  failActiveSpan(error: unknown): void {
    try {
      const span = trace.getActiveSpan();
      if (span !== undefined && span.isRecording()) markFailed(span, error, errorType(error), this.core.config.maxNameLength);
    } catch (e) {
      this.core.report.error('could not mark the active span as failed', e);
    }
  }
}

function endQuietly(span: Span | undefined): void {
  try {
    span?.end();
  } catch {
    // a span processor that throws: the job goes on
  }
}

function positiveInteger(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isInteger(value) && value >= 1 ? value : undefined;
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(undefined), ms);
    timer.unref?.();
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      () => {
        clearTimeout(timer);
        resolve(undefined);
      },
    );
  });
}
