import type { Attributes } from '@opentelemetry/api';
import {
  ATTR_ERROR_TYPE,
  ATTR_MESSAGING_OPERATION_NAME,
  ATTR_QUEUE_JOB_DEFERRAL,
  ATTR_QUEUE_JOB_NAME,
  ATTR_QUEUE_JOB_OUTCOME,
  OPERATION_PROCESS,
  OPERATION_SEND,
} from '../semconv.js';
import type { Deferral, Outcome } from './seam.js';

/**
 * Where a series gets the attribute sets of its ended attempts: its queue, which holds the budget
 * (see cardinality.ts) and the fallbacks for what does not fit.
 */
export interface OutcomeSets {
  /** `error.type` as the queue reports it: the type, or `_OTHER` past the queue's cap. */
  errorTypeOf(type: string): string;
  /** Whether a new outcome set of `series` may be created. */
  admitOutcome(series: JobSeries): boolean;
  /** The set to use when `series` may not create one (no deferral reason there). */
  fallbackOutcome(outcome: Outcome, errorType: string | undefined): Attributes;
}

/**
 * Everything queue-otel tracks for one (queue, job name): the attribute sets its metrics use,
 * built once and reused (the SDK hashes them on every record; allocating them per job would add
 * garbage on the hot path), and the running totals that the live metrics are read from.
 *
 * Busy time of running jobs is `running * now - startSum`, so a collection reads it in O(1) per
 * series instead of walking every running job.
 */
export class JobSeries {
  /** messaging.system, destination and job name: wait time, busy time, active. */
  readonly attributes: Attributes;
  /** The same plus `messaging.operation.name = send`: sent messages. */
  readonly sendAttributes: Attributes;
  /** The same plus `messaging.operation.name = process`: deliveries. */
  readonly processAttributes: Attributes;
  /** Outcome sets, created when first used (each counts against the queue's budget). */
  private readonly byOutcome = new Map<string, Attributes>();
  /** The same sets of attempts without error type or deferral, by outcome alone. */
  private readonly byPlainOutcome = new Map<Outcome, Attributes>();

  /** Attempts started (deliveries): `messaging.client.consumed.messages`. */
  delivered = 0;
  /** Attempts running now. */
  running = 0;
  /** The running attempts in start order: the first is the longest-running one. */
  readonly runningAttempts = new Set<{ readonly startedAt: number }>();
  /** Whether an attempt ever ran here: a series known only from producers has no live metrics. */
  consumed = false;
  /** Sum of the start times (performance.now() ms) of the running attempts. */
  private startSum = 0;
  /** Milliseconds of work of the attempts that have ended. */
  private doneMs = 0;
  /** Last busy time reported, so float rounding can never make the counter go down. */
  private lastBusyS = 0;
  /** Milliseconds of event-loop time of this series' jobs on this loop, running ones included. */
  loopMs = 0;
  /** Heap bytes attributed to the running attempts of this series that share the loop. */
  heldBytes = 0;
  private lastCpuS = 0;

  /** `jobName` undefined: the library has no job names (the series carries no `queue.job.name`). */
  constructor(
    base: Attributes,
    readonly jobName: string | undefined,
    private readonly sets: OutcomeSets,
    /** Whether this is its queue's `_OTHER` (fallback) series. */
    readonly fallback = false,
  ) {
    this.attributes = jobName === undefined ? { ...base } : { ...base, [ATTR_QUEUE_JOB_NAME]: jobName };
    this.sendAttributes = { ...this.attributes, [ATTR_MESSAGING_OPERATION_NAME]: OPERATION_SEND };
    this.processAttributes = { ...this.attributes, [ATTR_MESSAGING_OPERATION_NAME]: OPERATION_PROCESS };
  }

  /**
   * Attributes of an ended attempt: by outcome, by error type when it threw, by reason when it
   * was deferred. Within the queue's budget; past it, the queue's fallback set for the outcome.
   */
  outcomeAttributes(outcome: Outcome, errorType: string | undefined, deferral?: Deferral): Attributes {
    // Most attempts end with neither: their sets are found by the outcome alone, a constant
    // string, without building a key per attempt.
    if (errorType === undefined && deferral === undefined) {
      const plain = this.byPlainOutcome.get(outcome);
      if (plain !== undefined) return plain;
    }
    const type = errorType === undefined ? undefined : this.sets.errorTypeOf(errorType);
    const key = `${outcome}\0${type ?? ''}\0${deferral ?? ''}`;
    const found = this.byOutcome.get(key);
    if (found !== undefined) return found;
    if (!this.sets.admitOutcome(this)) return this.sets.fallbackOutcome(outcome, type);
    const created: Attributes = { ...this.processAttributes, [ATTR_QUEUE_JOB_OUTCOME]: outcome };
    if (type !== undefined) created[ATTR_ERROR_TYPE] = type;
    if (deferral !== undefined) created[ATTR_QUEUE_JOB_DEFERRAL] = deferral;
    this.byOutcome.set(key, created);
    if (type === undefined && deferral === undefined) this.byPlainOutcome.set(outcome, created);
    return created;
  }

  started(now: number): void {
    this.running++;
    this.startSum += now;
    this.consumed = true;
  }

  ended(startedAt: number, now: number): void {
    this.running--;
    this.doneMs += now - startedAt;
    // Reset rather than subtract when idle, so float error cannot accumulate over months.
    this.startSum = this.running === 0 ? 0 : this.startSum - startedAt;
    if (this.running === 0) this.heldBytes = 0;
  }

  /** Seconds the longest-running attempt has run, or 0. */
  oldestRunningSeconds(now: number): number {
    const first = this.runningAttempts.values().next();
    return first.done ? 0 : Math.max(0, now - first.value.startedAt) / 1000;
  }

  /** CPU seconds so far (`extraMs`: running sandboxed jobs, read at collection); never decreases. */
  cpuSeconds(extraMs: number): number {
    const cpu = (this.loopMs + extraMs) / 1000;
    if (cpu > this.lastCpuS) this.lastCpuS = cpu;
    return this.lastCpuS;
  }

  /** Seconds of work so far, running attempts included up to `now`; never decreases. */
  busySeconds(now: number): number {
    const busy = (this.doneMs + this.running * now - this.startSum) / 1000;
    if (busy > this.lastBusyS) this.lastBusyS = busy;
    return this.lastBusyS;
  }
}
