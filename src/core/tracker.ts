import type { Attributes } from '@opentelemetry/api';
import {
  ATTR_ERROR_TYPE,
  ATTR_MESSAGING_DESTINATION_NAME,
  ATTR_MESSAGING_OPERATION_NAME,
  ATTR_MESSAGING_SYSTEM,
  ATTR_QUEUE_JOB_OUTCOME,
  ATTR_QUEUE_JOB_STATE,
  ATTR_QUEUE_SCHEDULE_NAME,
  OPERATION_SEND,
  OTHER,
} from '../semconv.js';
import { CappedRegistry, Ledger } from './cardinality.js';
import type { JobState, Outcome } from './seam.js';
import { JobSeries, type OutcomeSets } from './series.js';

/** Reads the current concurrency limit of one worker. */
export type ConcurrencySource = () => number;

/** The budgets that bound every instrument's attribute sets (see cardinality.ts). */
export interface Limits {
  /** The SDK's cardinality limit per instrument: at most `cardinalityLimit − 1` sets are used. */
  cardinalityLimit: number;
  maxQueues: number;
  maxJobNamesPerQueue: number;
  maxErrorTypesPerQueue: number;
  /** Longer queue names, job names and error types are reported as `_OTHER` on metrics. */
  maxNameLength: number;
}

/** Reports a budget reached, once per key. */
export type BudgetWarning = (key: string, message: string) => void;

/** One ledger per family of attribute sets that instruments share. */
interface Ledgers {
  /** Sets keyed by (queue, job name): wait, busy, active, CPU, memory, deliveries, sent. */
  series: Ledger;
  /** Sets keyed by (queue, job name, outcome, error type): process duration, attempts. */
  outcomes: Ledger;
  /** Sets keyed by (queue, state): queue.job.count. */
  states: Ledger;
  /** Sets keyed by (queue, error type) of producer operations: operation duration. */
  operations: Ledger;
  /** Sets keyed by queue: concurrency, stalled, oldest ages. */
  queues: Ledger;
  /** Sets keyed by (queue, schedule name): schedule lag and missed runs. */
  schedules: Ledger;
}

/** Sets each queue holds back in each ledger, so its totals stay exact whatever comes later. */
const RESERVED: Record<keyof Ledgers, number> = { series: 1, outcomes: 1, states: 1, operations: 2, queues: 1, schedules: 1 };

/** One queue as this process sees it: its job series (names capped) and its workers. */
export class QueueEntry implements OutcomeSets {
  readonly attributes: Attributes;
  readonly workers = new Set<ConcurrencySource>();
  private readonly named: CappedRegistry<JobSeries>;
  /** Jobs past the name cap or budget, and, once the budget is full, their outcomes. */
  private other: JobSeries | undefined;
  /** Jobs of a library without job names: one series with no `queue.job.name`. */
  private unnamed: JobSeries | undefined;
  private readonly errorTypes = new Set<string>();
  private readonly states = new Map<string, Attributes>();
  private readonly operations = new Map<string, Attributes>();
  private readonly fallbacks = new Map<string, Attributes>();
  private total: Attributes | undefined;
  /** `queue.schedule.*` sets by schedule name, capped like job names (`maxJobNamesPerQueue`). */
  private readonly schedules: CappedRegistry<Attributes>;
  private otherSchedule: Attributes | undefined;

  constructor(
    system: string,
    readonly name: string,
    private readonly limits: () => Limits,
    private readonly ledgers: Ledgers,
    private readonly warn: BudgetWarning,
  ) {
    this.attributes = { [ATTR_MESSAGING_SYSTEM]: system, [ATTR_MESSAGING_DESTINATION_NAME]: name };
    this.named = new CappedRegistry(
      () => limits().maxJobNamesPerQueue,
      (jobName) => new JobSeries(this.attributes, jobName, this),
      () => this.otherSeries(),
      () => ledgers.series.takeSpecific(),
      () =>
        warn(
          'names',
          `queue "${name}" has more than ${limits().maxJobNamesPerQueue} job names; further names are reported as ${OTHER} (option maxJobNamesPerQueue)`,
        ),
    );
    // Schedules are few by nature (a crontab, a handful of job schedulers); the job-name cap and a
    // ledger of their own bound them all the same, since a schedule id can be built from user input.
    this.schedules = new CappedRegistry(
      () => limits().maxJobNamesPerQueue,
      (schedule) => ({ ...this.attributes, [ATTR_QUEUE_SCHEDULE_NAME]: schedule }),
      () => this.otherScheduleAttributes(),
      () => ledgers.schedules.takeSpecific(),
      () =>
        warn(
          'schedules',
          `queue "${name}" has more than ${limits().maxJobNamesPerQueue} schedules; further ones are reported as ${OTHER} (option maxJobNamesPerQueue)`,
        ),
    );
  }

  /** `queue.schedule.lag` and `queue.schedule.missed` attributes of a schedule; past the cap, `_OTHER`. */
  scheduleAttributes(schedule: string): Attributes {
    if (schedule.length > this.limits().maxNameLength) {
      this.warn('schedule-length', `a schedule name longer than ${this.limits().maxNameLength} characters is reported as ${OTHER} (option maxNameLength)`);
      return this.otherScheduleAttributes();
    }
    return this.schedules.get(schedule);
  }

  private otherScheduleAttributes(): Attributes {
    if (this.otherSchedule === undefined) {
      this.ledgers.schedules.useReserved();
      this.otherSchedule = { ...this.attributes, [ATTR_QUEUE_SCHEDULE_NAME]: OTHER };
    }
    return this.otherSchedule;
  }

  /** The series of a job name, or of the queue's unnamed jobs when `jobName` is undefined. */
  seriesOf(jobName: string | undefined): JobSeries {
    if (jobName === undefined) {
      if (this.unnamed !== undefined) return this.unnamed;
      if (!this.ledgers.series.takeFallback()) return this.otherSeries();
      return (this.unnamed = new JobSeries(this.attributes, undefined, this));
    }
    if (jobName.length > this.limits().maxNameLength) {
      this.warn('name-length', `a job name longer than ${this.limits().maxNameLength} characters is reported as ${OTHER} (option maxNameLength)`);
      return this.otherSeries();
    }
    return this.named.get(jobName);
  }

  /** Every series of the queue. */
  *allSeries(): IterableIterator<JobSeries> {
    yield* this.named.values();
    if (this.unnamed !== undefined) yield this.unnamed;
    if (this.other !== undefined) yield this.other;
  }

  /** Sum of the concurrency limits of this process's workers on the queue (0 when none runs). */
  concurrency(): number {
    let total = 0;
    for (const read of this.workers) {
      let value = 0;
      try {
        value = read();
      } catch {
        // a worker object in a bad state counts as none
      }
      if (Number.isFinite(value) && value > 0) total += value;
    }
    return total;
  }

  /** `queue.job.count` attributes of a state; past the budget, state `_OTHER`. */
  stateAttributes(state: JobState): Attributes {
    let found = this.states.get(state);
    if (found !== undefined) return found;
    if (this.ledgers.states.takeFallback()) {
      found = { ...this.attributes, [ATTR_QUEUE_JOB_STATE]: state };
      this.states.set(state, found);
      return found;
    }
    found = this.states.get(OTHER);
    if (found === undefined) {
      this.ledgers.states.useReserved();
      found = { ...this.attributes, [ATTR_QUEUE_JOB_STATE]: OTHER };
      this.states.set(OTHER, found);
    }
    return found;
  }

  /** `messaging.client.operation.duration` attributes of a send, by error type when it failed. */
  operationAttributes(errorType: string | undefined): Attributes {
    const type = errorType === undefined ? undefined : this.errorTypeOf(errorType);
    const key = type ?? '';
    let found = this.operations.get(key);
    if (found !== undefined) return found;
    const base = { ...this.attributes, [ATTR_MESSAGING_OPERATION_NAME]: OPERATION_SEND };
    if (type === undefined || type === OTHER) {
      this.ledgers.operations.useReserved();
      found = type === undefined ? base : { ...base, [ATTR_ERROR_TYPE]: OTHER };
    } else if (this.ledgers.operations.takeSpecific()) {
      found = { ...base, [ATTR_ERROR_TYPE]: type };
    } else {
      return this.operationAttributes(OTHER);
    }
    this.operations.set(key, found);
    return found;
  }

  // ---- OutcomeSets: how the queue's series fold their outcome sets --------------------------

  errorTypeOf(type: string): string {
    if (this.errorTypes.has(type)) return type;
    const { maxErrorTypesPerQueue, maxNameLength } = this.limits();
    if (type === OTHER || type.length > maxNameLength) return OTHER;
    if (this.errorTypes.size >= maxErrorTypesPerQueue) {
      this.warn(
        'errors',
        `queue "${this.name}" has more than ${maxErrorTypesPerQueue} error types; further ones are reported as ${OTHER} (option maxErrorTypesPerQueue)`,
      );
      return OTHER;
    }
    this.errorTypes.add(type);
    return type;
  }

  admitOutcome(series: JobSeries): boolean {
    if (series.fallback) return false; // its sets are the queue's fallbacks, made below
    return series.jobName === undefined || series === this.unnamed ? this.ledgers.outcomes.takeFallback() : this.ledgers.outcomes.takeSpecific();
  }

  fallbackOutcome(outcome: Outcome, errorType: string | undefined): Attributes {
    const type = errorType === undefined ? undefined : OTHER;
    const key = type === undefined ? outcome : `${outcome}\0${type}`;
    let found = this.fallbacks.get(key);
    if (found !== undefined) return found;
    if (!this.ledgers.outcomes.takeFallback()) return this.totalAttributes();
    found = { ...this.otherSeries().processAttributes, [ATTR_QUEUE_JOB_OUTCOME]: outcome };
    if (type !== undefined) found[ATTR_ERROR_TYPE] = type;
    this.fallbacks.set(key, found);
    return found;
  }

  /** The queue's reserved outcome set: every attempt that found no other room, outcome `_OTHER`. */
  private totalAttributes(): Attributes {
    if (this.total === undefined) {
      this.ledgers.outcomes.useReserved();
      this.total = { ...this.otherSeries().processAttributes, [ATTR_QUEUE_JOB_OUTCOME]: OTHER };
    }
    return this.total;
  }

  private otherSeries(): JobSeries {
    if (this.other === undefined) {
      this.ledgers.series.useReserved();
      this.other = new JobSeries(this.attributes, OTHER, this, true);
    }
    return this.other;
  }
}

/**
 * The running jobs and completed totals of every queue seen by one instrumentation. Queues and
 * series are kept for the life of the process so that a queue or job name that goes quiet is
 * observed as 0, never left at its last value; budgets (cardinality.ts) bound how many there are.
 */
export class Tracker {
  private readonly queues = new Map<string, QueueEntry>();
  private readonly ledgers: Ledgers;
  /** Queues past `maxQueues` or the budgets, and over-long queue names. */
  private readonly otherQueue: QueueEntry;
  private otherUsed = false;

  constructor(
    private readonly system: string,
    private readonly limits: () => Limits,
    private readonly warn: BudgetWarning,
  ) {
    const ledger = (family: keyof Ledgers, what: string) =>
      new Ledger(
        () => this.capacity(),
        () => Math.max(0, this.queueBudget() - this.queues.size) * RESERVED[family],
        () => warn(`budget:${family}`, `the ${what} attribute sets reached their budget; further ones are folded into ${OTHER} values (option cardinalityLimit)`),
      );
    this.ledgers = {
      series: ledger('series', 'job-name'),
      outcomes: ledger('outcomes', 'outcome'),
      states: ledger('states', 'queue-state'),
      operations: ledger('operations', 'producer'),
      queues: ledger('queues', 'queue'),
      schedules: ledger('schedules', 'schedule'),
    };
    this.reserve();
    this.otherQueue = new QueueEntry(system, OTHER, limits, this.ledgers, warn);
  }

  /** The entry of a queue; a queue past the budgets (or with an over-long name) is `_OTHER`. */
  queue(name: string): QueueEntry {
    const found = this.queues.get(name);
    if (found !== undefined) return found;
    const { maxQueues, maxNameLength } = this.limits();
    if (typeof name !== 'string' || name === OTHER || name.length > maxNameLength) {
      this.warn('queue-name', `a queue name longer than ${maxNameLength} characters is reported as ${OTHER} (option maxNameLength)`);
      this.otherUsed = true;
      return this.otherQueue;
    }
    if (this.queues.size >= this.queueBudget()) {
      this.warn(
        'queues',
        `more than ${this.queues.size} queues; further queues are reported as ${OTHER} (options maxQueues${this.queueBudget() < maxQueues ? ' and cardinalityLimit' : ''})`,
      );
      this.otherUsed = true;
      return this.otherQueue;
    }
    this.reserve();
    const entry = new QueueEntry(this.system, name, this.limits, this.ledgers, this.warn);
    this.queues.set(name, entry);
    return entry;
  }

  /** `jobName` undefined: a library without job names. */
  series(queue: string, jobName: string | undefined): JobSeries {
    return this.queue(queue).seriesOf(jobName);
  }

  /** Registers a worker's concurrency; returns the function that unregisters it. */
  addWorker(queue: string, read: ConcurrencySource): () => void {
    const workers = this.queue(queue).workers;
    workers.add(read);
    return () => workers.delete(read);
  }

  /** Every queue, `_OTHER` last once a queue was folded into it. */
  *allQueues(): IterableIterator<QueueEntry> {
    yield* this.queues.values();
    if (this.otherUsed) yield this.otherQueue;
  }

  /** Sets in use or held back per family (for tests of the budgets). */
  budgetSizes(): Record<keyof Ledgers, number> {
    const sizes = {} as Record<keyof Ledgers, number>;
    for (const key of Object.keys(this.ledgers) as Array<keyof Ledgers>) sizes[key] = this.ledgers[key].size;
    return sizes;
  }

  /** Sets an instrument may hold: one less than the SDK's limit, whose last set is its overflow. */
  private capacity(): number {
    return Math.max(1, this.limits().cardinalityLimit - 1);
  }

  /**
   * Queues reported by name: `maxQueues`, and no more than a third of the capacity, so that the
   * reservations of every queue (at most two sets each) leave room for named sets.
   */
  private queueBudget(): number {
    return Math.max(0, Math.min(this.limits().maxQueues, Math.floor(this.capacity() / 3) - 1));
  }

  /** Holds back one queue's sets in every ledger. */
  private reserve(): void {
    for (const f of Object.keys(RESERVED) as Array<keyof Ledgers>) this.ledgers[f].reserve(RESERVED[f]);
  }
}
