import {
  type Attributes,
  type Context,
  type Link,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  context,
  isSpanContextValid,
  propagation,
  trace,
} from '@opentelemetry/api';
import {
  ATTR_ERROR_TYPE,
  ATTR_MESSAGING_DESTINATION_NAME,
  ATTR_MESSAGING_MESSAGE_ID,
  ATTR_MESSAGING_OPERATION_NAME,
  ATTR_MESSAGING_OPERATION_TYPE,
  ATTR_MESSAGING_SYSTEM,
  ATTR_QUEUE_JOB_ATTEMPT,
  ATTR_QUEUE_JOB_CPU_TIME,
  ATTR_QUEUE_JOB_MEMORY_PEAK,
  ATTR_QUEUE_JOB_NAME,
  ATTR_QUEUE_JOB_OUTCOME,
  ATTR_QUEUE_JOB_WAIT_DURATION,
  OPERATION_PROCESS,
} from '../semconv.js';
import { errorMessage, errorType } from './error-type.js';
import { type Isolate, type IsolateHandle, type IsolateReading, toIsolate } from './resources/isolates.js';
import { type LoopTenant, activeTenant, releaseTenant, runAsSlice, runWithTenant } from './resources/loop-attribution.js';
import type { JobSeries, Outcome } from './series.js';
import type { QueueTelemetry } from './telemetry.js';

/** What an adapter knows about a job attempt when it starts. */
export interface AttemptFacts {
  queue: string;
  /** The job's name; undefined when the library has no job names (no `queue.job.name` then). */
  jobName: string | undefined;
  /** Goes on the span only, never on a metric. */
  jobId: string | undefined;
  /** 1-based attempt number. */
  attempt: number;
  /** Epoch ms at which the job became ready to run, when the library tells it. */
  readyAt: number | undefined;
  /** The producer's propagated context (W3C trace context fields), if the job carries one. */
  carrier: Record<string, string> | undefined;
  /** False when the library already makes a `process` span for this attempt (never make two). */
  traced: boolean;
  /**
   * The library makes its own `process` span for this attempt (`traced` false) and it is the active
   * span when `start` is called: queue-otel adds its attributes to it (job name, attempt, wait,
   * outcome, CPU, memory) and never ends it.
   */
  annotateActiveSpan?: boolean;
  /**
   * True when the library itself records `messaging.process.duration` and
   * `messaging.client.consumed.messages` for this attempt: queue-otel then leaves both to it, so
   * no sum counts an attempt twice, and records everything else.
   */
  nativeMessagingMetrics?: boolean;
  /** The library's job object, for the user's processHook only. */
  job: unknown;
}

/** One running attempt: its span and what it has used so far. */
export class Attempt implements LoopTenant {
  /** Event-loop time of its slices, or CPU time of its sandbox (ms). */
  cpuMs = 0;
  /** Heap bytes attributed to it now (shared loop). */
  heldBytes = 0;
  /** The most memory it was seen to hold. */
  peakBytes = 0;
  ended = false;
  /** Its code runs in a sandboxed process or thread, not on this loop. */
  isolated = false;
  isolate: Isolate | undefined;
  /** The sandbox's cumulative CPU when the job was handed to it. */
  isolateCpuBase: number | undefined;
  /** The library's own span for this attempt, annotated but never ended here. */
  librarySpan: Span | undefined;
  /** False when the library records the messaging process metrics itself. */
  messagingMetrics = true;

  constructor(
    readonly series: JobSeries,
    readonly startedAt: number,
    readonly span: Span | undefined,
    /** Context to run the job in (the span's), or undefined to leave the context alone. */
    readonly context: Context | undefined,
  ) {}

  get attributable(): boolean {
    return !this.ended && !this.isolated;
  }

  recentBytes = 0;

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

/** How an attempt ended, as the adapter saw it. */
export interface AttemptEnd {
  outcome: Outcome;
  /** The error the attempt threw; absent for a completed attempt or a deliberate deferral. */
  error?: unknown;
  /** Attempts the job has used, when it completed or finally failed. */
  attemptsMade?: number;
}

/** Starts and ends job attempts: the `process` span, the tracker and the per-attempt metrics. */
export class AttemptRecorder {
  constructor(private readonly telemetry: QueueTelemetry) {}

  /** Returns undefined (and the job runs untouched) if anything in here fails. */
  start(facts: AttemptFacts): Attempt | undefined {
    const t = this.telemetry;
    try {
      const now = performance.now();
      const series = t.tracker.series(facts.queue, facts.jobName);
      let waitS: number | undefined;
      if (facts.readyAt !== undefined) {
        // Clocks of producer and worker machines differ; a negative wait is skew, not time.
        waitS = Math.max(0, Date.now() - facts.readyAt) / 1000;
        t.metrics?.waitDuration.record(waitS, series.attributes);
      }
      let span: Span | undefined;
      let ctx: Context | undefined;
      const tracer = t.tracer;
      if (facts.traced && tracer !== undefined) {
        const attributes: Attributes = {
          [ATTR_MESSAGING_SYSTEM]: t.system,
          [ATTR_MESSAGING_DESTINATION_NAME]: facts.queue,
          [ATTR_MESSAGING_OPERATION_NAME]: OPERATION_PROCESS,
          [ATTR_MESSAGING_OPERATION_TYPE]: OPERATION_PROCESS,
          [ATTR_QUEUE_JOB_ATTEMPT]: facts.attempt,
        };
        if (facts.jobName !== undefined) attributes[ATTR_QUEUE_JOB_NAME] = facts.jobName;
        if (facts.jobId !== undefined) attributes[ATTR_MESSAGING_MESSAGE_ID] = facts.jobId;
        if (waitS !== undefined) attributes[ATTR_QUEUE_JOB_WAIT_DURATION] = waitS;
        // A worker loop started inside some span would otherwise parent every job to it forever:
        // each attempt starts from the root, or from the producer when asked to.
        let parent: Context = ROOT_CONTEXT;
        let links: Link[] | undefined;
        if (facts.carrier !== undefined) {
          const producer = propagation.extract(ROOT_CONTEXT, facts.carrier);
          const producerSpan = trace.getSpanContext(producer);
          if (producerSpan !== undefined && isSpanContextValid(producerSpan)) {
            if (t.config.useProducerSpanAsParent) parent = producer;
            else links = [{ context: producerSpan }];
          }
        }
        span = tracer.startSpan(
          `${OPERATION_PROCESS} ${facts.queue}`,
          { kind: SpanKind.CONSUMER, attributes, links },
          parent,
        );
        ctx = trace.setSpan(parent, span);
        if (t.config.processHook) this.runHook(span, facts);
      }
      const library = !facts.traced && facts.annotateActiveSpan === true ? trace.getActiveSpan() : undefined;
      if (library !== undefined && library.isRecording()) {
        if (facts.jobName !== undefined) library.setAttribute(ATTR_QUEUE_JOB_NAME, facts.jobName);
        library.setAttribute(ATTR_QUEUE_JOB_ATTEMPT, facts.attempt);
        if (waitS !== undefined) library.setAttribute(ATTR_QUEUE_JOB_WAIT_DURATION, waitS);
      }
      series.started(now);
      const attempt = new Attempt(series, now, span, ctx);
      attempt.librarySpan = library;
      if (facts.nativeMessagingMetrics === true) attempt.messagingMetrics = false;
      series.runningAttempts.add(attempt);
      return attempt;
    } catch (error) {
      t.diag.error('could not start telemetry for a job; it runs uninstrumented', error);
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
    if (!this.telemetry.resourcesOn) {
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
      if (!(attempt instanceof Attempt) || attempt.ended || !this.telemetry.resourcesOn) return;
      const isolate = toIsolate(handle);
      if (isolate === undefined) return;
      attempt.isolate = isolate;
      attempt.isolateCpuBase =
        isolate.readCpu !== undefined ? await withTimeout(isolate.readCpu(), 200) : isolate.readNow().cpuMs;
      this.telemetry.addIsolated(attempt);
    } catch (error) {
      this.telemetry.diag.error('could not read a sandboxed job\'s process or thread', error);
    }
  }

  end(attempt: Attempt, end: AttemptEnd): void {
    const now = performance.now();
    const { series } = attempt;
    attempt.ended = true;
    releaseTenant(attempt);
    series.heldBytes -= attempt.heldBytes;
    series.runningAttempts.delete(attempt);
    series.ended(attempt.startedAt, now);
    const t = this.telemetry;
    try {
      const type = end.error === undefined ? undefined : errorType(end.error);
      const attributes = series.outcomeAttributes(end.outcome, type);
      if (attempt.messagingMetrics) series.endedAttempts.set(attributes, (series.endedAttempts.get(attributes) ?? 0) + 1);
      const metrics = t.metrics;
      if (metrics !== undefined) {
        if (attempt.messagingMetrics) metrics.processDuration.record((now - attempt.startedAt) / 1000, attributes);
        if (end.attemptsMade !== undefined && end.outcome !== 'retried') {
          metrics.attempts.record(end.attemptsMade, series.outcomeAttributes(end.outcome, undefined));
        }
      }
      const isolate = attempt.isolate;
      if (isolate !== undefined) {
        t.isolated.delete(attempt);
        const settle = (reading: IsolateReading, memoryBytes: number | undefined) => {
          const cpu = attempt.isolateCpu(reading);
          if (cpu !== undefined) {
            attempt.cpuMs = cpu;
            series.loopMs += cpu; // its CPU now counts as done work of the series
          }
          const memory = memoryBytes ?? reading.memoryBytes;
          if (memory !== undefined) attempt.peakBytes = Math.max(attempt.peakBytes, memory);
        };
        if (isolate.readCpu !== undefined || isolate.readMemory !== undefined) {
          // A thread is read asynchronously; the span and the peak wait for it (bounded).
          void Promise.all([
            isolate.readCpu === undefined ? undefined : withTimeout(isolate.readCpu(), 500),
            isolate.readMemory === undefined ? undefined : withTimeout(isolate.readMemory(), 500),
          ]).then(([, memory]) => {
            settle(isolate.readNow(), memory);
            this.finish(attempt, end, type);
          });
          return;
        }
        settle(isolate.readNow(), undefined);
      }
      this.finish(attempt, end, type);
    } catch (error) {
      t.diag.error('could not record the end of a job attempt', error);
    }
  }

  /** Records what the attempt used and ends its span. */
  private finish(attempt: Attempt, end: AttemptEnd, type: string | undefined): void {
    const t = this.telemetry;
    try {
      const { span } = attempt;
      const measured = t.resourcesOn && (attempt.isolate !== undefined || !attempt.isolated);
      if (measured && t.config.jobMemory) t.metrics?.memoryPeak.record(attempt.peakBytes, attempt.series.attributes);
      if (span !== undefined) {
        span.setAttribute(ATTR_QUEUE_JOB_OUTCOME, end.outcome);
        if (measured && t.config.jobCpu) span.setAttribute(ATTR_QUEUE_JOB_CPU_TIME, attempt.cpuMs / 1000);
        if (measured && t.config.jobMemory) span.setAttribute(ATTR_QUEUE_JOB_MEMORY_PEAK, attempt.peakBytes);
        if (type !== undefined) markFailed(span, end.error, type);
        span.end();
      }
      const library = attempt.librarySpan;
      if (library !== undefined && library.isRecording()) {
        library.setAttribute(ATTR_QUEUE_JOB_OUTCOME, end.outcome);
        if (measured && t.config.jobCpu) library.setAttribute(ATTR_QUEUE_JOB_CPU_TIME, attempt.cpuMs / 1000);
        if (measured && t.config.jobMemory) library.setAttribute(ATTR_QUEUE_JOB_MEMORY_PEAK, attempt.peakBytes);
      }
    } catch (error) {
      t.diag.error('could not record the end of a job attempt', error);
    }
  }

  /**
   * Marks the active span as failed: for an attempt whose span the queue library made itself
   * (its native telemetry), which records the exception but leaves the status unset.
   */
  failActiveSpan(error: unknown): void {
    try {
      const span = trace.getActiveSpan();
      if (span !== undefined && span.isRecording()) markFailed(span, error, errorType(error));
    } catch (e) {
      this.telemetry.diag.error('could not mark the active span as failed', e);
    }
  }

  private runHook(span: Span, facts: AttemptFacts): void {
    try {
      this.telemetry.config.processHook?.(span, { queue: facts.queue, job: facts.job });
    } catch (error) {
      this.telemetry.diag.error('processHook threw', error);
    }
  }
}

function markFailed(span: Span, error: unknown, type: string): void {
  span.setAttribute(ATTR_ERROR_TYPE, type);
  if (error instanceof Error) span.recordException(error);
  span.setStatus({ code: SpanStatusCode.ERROR, message: errorMessage(error) });
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
