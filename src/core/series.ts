import type { Attributes } from '@opentelemetry/api';
import {
  ATTR_ERROR_TYPE,
  ATTR_MESSAGING_DESTINATION_NAME,
  ATTR_MESSAGING_OPERATION_NAME,
  ATTR_MESSAGING_SYSTEM,
  ATTR_QUEUE_JOB_NAME,
  ATTR_QUEUE_JOB_OUTCOME,
  OPERATION_PROCESS,
  OPERATION_SEND,
} from '../semconv.js';
import { CappedRegistry } from './cardinality.js';

/** How an attempt ended. `failed` means no attempt is left: the job is in the failed set. */
export type Outcome = 'completed' | 'retried' | 'failed';

/** Distinct `error.type` values kept per job series before the rest read `_OTHER`. */
const MAX_ERROR_TYPES = 20;

/**
 * Everything queue-otel tracks for one (queue, job name): the attribute sets its metrics use,
 * built once and reused (the SDK hashes them on every record, allocating them per job would add
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
  private readonly byOutcome: Record<Outcome, Attributes>;
  private readonly byError: Record<Outcome, CappedRegistry<Attributes>>;

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
  constructor(base: Attributes, readonly jobName: string | undefined) {
    this.attributes = jobName === undefined ? { ...base } : { ...base, [ATTR_QUEUE_JOB_NAME]: jobName };
    this.sendAttributes = { ...this.attributes, [ATTR_MESSAGING_OPERATION_NAME]: OPERATION_SEND };
    const processAttributes = { ...this.attributes, [ATTR_MESSAGING_OPERATION_NAME]: OPERATION_PROCESS };
    const forOutcome = (outcome: Outcome) => ({ ...processAttributes, [ATTR_QUEUE_JOB_OUTCOME]: outcome });
    this.byOutcome = { completed: forOutcome('completed'), retried: forOutcome('retried'), failed: forOutcome('failed') };
    const forError = (outcome: Outcome) =>
      new CappedRegistry<Attributes>(MAX_ERROR_TYPES, (type) => ({ ...this.byOutcome[outcome], [ATTR_ERROR_TYPE]: type }));
    this.byError = { completed: forError('completed'), retried: forError('retried'), failed: forError('failed') };
  }

  /** Ended attempts per attribute set (outcome, error type): `messaging.client.consumed.messages`. */
  readonly endedAttempts = new Map<Attributes, number>();

  /** Attributes of an ended attempt: by outcome, and by error type when it threw. */
  outcomeAttributes(outcome: Outcome, errorType: string | undefined): Attributes {
    return errorType === undefined ? this.byOutcome[outcome] : this.byError[outcome].get(errorType);
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
