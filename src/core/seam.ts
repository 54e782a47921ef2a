/**
 * The seam between an adapter (one queue library) and the core (all telemetry). An adapter sees
 * a job start, hands the core plain facts about it, runs the job where the core says, and reports
 * how it ended; it never touches OpenTelemetry. Everything an adapter may use of the core is in
 * this file, so an adapter reads without opening the core.
 *
 * Every method here is safe to call with anything a job carries: the core catches its own faults
 * and reports them through OpenTelemetry's `diag`, and the adapter's job runs untouched.
 */

/**
 * How an attempt ended. `failed` means no attempt is left: the job went to the failed set.
 * `deferred`: the processor put the job off on purpose (a delay, its children, a rate limit);
 * it did not fail, and will run again.
 */
export type Outcome = 'completed' | 'retried' | 'failed' | 'deferred';

/**
 * Why an attempt was deferred (`queue.job.deferral`): moved to the delayed set, back to the wait
 * list, to wait for its children, or back because of a rate limit.
 */
export type Deferral = 'delayed' | 'waiting' | 'waiting_children' | 'rate_limited';

/** A propagation carrier as a job stores it: W3C trace context fields (`traceparent`, ...). */
export type Carrier = Record<string, string>;

/**
 * A run of a schedule (a job scheduler, a repeatable job, a cron entry) as its library tells it,
 * for `queue.schedule.lag`: how late the run started against the time it was due. Only what the
 * library stores with the run, read without a round trip (see docs/schedules.md).
 */
export interface ScheduleFacts {
  /**
   * Which schedule: its id in the library (BullMQ's job scheduler id or repeat key, Bull's repeat
   * key, pg-boss's queue and key, graphile-worker's task identifier). Capped per queue like job names.
   */
  name: string;
  /** Epoch ms of the occurrence this run is for: the time it was due. */
  scheduledAt: number;
}

/** What an adapter knows about a job attempt when it starts. */
export interface AttemptFacts {
  queue: string;
  /** The job's name; undefined when the library has no job names (no `queue.job.name` then). */
  jobName: string | undefined;
  /** Goes on the span only, never on a metric. */
  jobId: string | undefined;
  /** 1-based attempt number, when the library tells it. */
  attempt: number | undefined;
  /** Epoch ms at which the job became ready to run, when the library tells it. */
  readyAt: number | undefined;
  /** The producer's context as the job carries it, if it carries one (anything: it is checked). */
  carrier: unknown;
  /**
   * Carriers of related jobs' creation the `process` span links to besides its producer: a flow
   * parent's children (the core uses at most 32).
   */
  links?: readonly unknown[];
  /** False when the library already makes a `process` span for this attempt (never make two). */
  traced: boolean;
  /**
   * The library makes its own `process` span for this attempt (`traced` false) and it is the active
   * span when the attempt starts: the core adds its attributes to it and never ends it.
   */
  annotateActiveSpan?: boolean;
  /**
   * The library itself records `messaging.process.duration` and
   * `messaging.client.consumed.messages` for this attempt: the core leaves both to it.
   */
  nativeMessagingMetrics?: boolean;
  /** The library's job object, for the user's processHook only. */
  job: unknown;
  /**
   * The job is a run of a schedule: its lag is recorded when this attempt starts. Give it on the
   * run's first attempt only (a retry is not late, it is retried), and only when the library stores
   * the time the run was due with the job.
   */
  schedule?: ScheduleFacts;
}

/** How an attempt ended, as the adapter saw it. */
export interface AttemptEnd {
  outcome: Outcome;
  /** The value the attempt threw; absent for a completed attempt or a deliberate deferral. */
  error?: unknown;
  /** The attempt threw `error`, even if that value is undefined. Default: `error !== undefined`. */
  threw?: boolean;
  /** Attempts the job has used, when it completed or finally failed. */
  attemptsMade?: number;
  /** Why, for outcome `deferred`. */
  deferral?: Deferral;
}

declare const attemptBrand: unique symbol;
/** A running attempt, as the core handed it out. Opaque to adapters. */
export interface AttemptHandle {
  readonly [attemptBrand]: true;
}

/** Where a sandboxed job runs, for its CPU and memory. */
export type IsolateHandle =
  | { kind: 'process'; pid: number }
  | { kind: 'thread'; thread: ThreadLike };

/** The parts of `worker_threads.Worker` read for a sandboxed job. */
export interface ThreadLike {
  /** For a CPU profile of the job in the thread (option `profileJobs`). */
  threadId?: number;
  cpuUsage?(): Promise<{ user: number; system: number }>;
  performance?: { eventLoopUtilization(): { active: number } };
  getHeapStatistics?(): Promise<{ used_heap_size: number }>;
}

/** One job a producer operation adds. */
export interface SentJob {
  queue: string;
  /** Undefined when the library has no job names. */
  jobName: string | undefined;
}

/** What an adapter knows about a producer operation (add, addBulk, a flow) before it runs. */
export interface SendFacts {
  /** The queue added to; undefined when the jobs go to several queues (a flow). */
  queue: string | undefined;
  /** Every job the operation adds. */
  jobs: readonly SentJob[];
  /** False when the library already makes a producer span for this call. */
  traced: boolean;
  /**
   * The library itself records `messaging.client.sent.messages` and
   * `messaging.client.operation.duration` for this call: the core records neither.
   */
  nativeMessagingMetrics?: boolean;
  /** For the user's sendHook only. */
  hookInfo: () => { queue: string; jobs: ReadonlyArray<{ readonly name: string; readonly data?: unknown; readonly opts?: unknown }> };
}

/** Job states reported by `queue.job.count`. */
export const JOB_STATES = [
  'waiting',
  'active',
  'delayed',
  'failed',
  'prioritized',
  'waiting-children',
  'paused',
  'completed',
] as const;
export type JobState = (typeof JOB_STATES)[number];

/** One read of a queue's state, all in one round trip. */
export interface QueueStateReading {
  /** Jobs per state; a state the library does not have is left out (and not reported). */
  counts: Partial<Record<JobState, number>>;
  /** Epoch ms at which the oldest job that is ready to run became ready. */
  oldestReadyAt: number | undefined;
  /** Epoch ms at which the oldest job in the failed set failed. */
  oldestFailedAt: number | undefined;
  /**
   * False when the library cannot tell the oldest ready job's age cheaply: `queue.oldest.age` is
   * then not reported for the queue (rather than reported as 0). Default true.
   */
  hasOldest?: boolean;
  /** The same for `queue.failed.oldest.age`. Default true. */
  hasFailedOldest?: boolean;
  /** Something the user should know about how this queue is read (estimates, say): warned once. */
  notice?: string;
}

/** Another process holds the queue's lease. */
export interface LeaseHeld {
  kind: 'held';
  /** Milliseconds until the holder's lease runs out, when the store tells: the next try is then. */
  retryInMs?: number;
}

/** The queue cannot be read truthfully here; `reason` is warned once and nothing is reported. */
export interface StateUnavailable {
  kind: 'unavailable';
  reason: string;
}

/**
 * What a read gives: a reading (this process holds the lease, or no lease is used), `LeaseHeld`
 * (or `undefined`) when another process holds it, `StateUnavailable`, or `null` when this process
 * no longer has the queue open (it is forgotten until it is used again).
 */
export type QueueStateResult = QueueStateReading | LeaseHeld | StateUnavailable | undefined | null;

/** What a read is asked. */
export interface StateReadRequest {
  /** This process's lease owner id. */
  owner: string;
  /** How long a lease taken or renewed now lasts; 0: no lease, every process reads. */
  leaseMs: number;
  /** The store stops the read after this long where it can (PostgreSQL's statement_timeout). */
  timeoutMs: number;
  intervalMs: number;
  /**
   * To be awaited by the source once its connection is ready, right before it queries the store:
   * waits for one of the process's read slots, and starts the read timeout.
   */
  begin(): Promise<void>;
}

/** Reads one queue's state from its store. */
export interface QueueStateSource {
  read(request: StateReadRequest): Promise<QueueStateResult>;
  /** Gives up this process's lease, if it holds it: it stops reading the queue. */
  release?(owner: string): Promise<unknown> | void;
}

/** A queue listed in the `queues` option. */
export interface QueueEntry {
  name: string;
  /** The queue's key prefix (pg-boss: its schema); unset: looked for among those in use. */
  prefix?: string;
}

/** What an adapter reports to, and the options it acts on. */
export interface JobTelemetry {
  /** Whether queue state is read (`queueState` option): adapters then call {@link watchQueue}. */
  readonly queueState: boolean;
  /** Queues listed in the `queues` option, read where they are found (see {@link QueueEntry}). */
  readonly listedQueues: readonly QueueEntry[];

  /**
   * An attempt starts. `facts` is called inside the core's guard, so reading a malformed job there
   * cannot hurt it. Returns undefined (run the job untouched) when nothing is to be recorded or
   * anything failed.
   */
  startAttempt(facts: () => AttemptFacts): AttemptHandle | undefined;
  /**
   * Runs the job's processor in the attempt's context (its span, its resource slices).
   * `sandboxed`: the processor hands the job to another process or thread.
   */
  runAttempt<T>(attempt: AttemptHandle, processor: () => T, sandboxed: boolean): T;
  /** The attempt ended. Call once per started attempt; later calls are ignored. */
  endAttempt(attempt: AttemptHandle, end: AttemptEnd): void;
  /**
   * The attempt running in the active context was handed to this process or thread. Resolves once
   * the baseline is read (at most 200 ms); never rejects.
   */
  sandboxAssigned(handle: IsolateHandle): Promise<void>;
  /** Marks the library's own active span as failed (its telemetry records no ERROR status). */
  failLibrarySpan(error: unknown): void;

  /**
   * Runs a producer operation in its `send` span. `add` gets, for each job by its index in
   * `SendFacts.jobs`, the carrier to store with it (undefined: store none); its result or error
   * passes through untouched.
   */
  send<T>(facts: () => SendFacts, add: (carrierFor: (job: number) => Carrier | undefined) => T): T;

  /** Reads this queue's state from now on (first source wins; cheap after the first call). */
  watchQueue(queue: string, source: () => QueueStateSource | undefined): void;
  /** A worker started taking jobs of `queue`; returns the function to call when it stops. */
  workerStarted(queue: string, concurrency: () => number): () => void;
  /** Jobs the library found stalled. */
  stalled(queue: string, count?: number): void;
  /** The queue's rate limiter held a worker back for `seconds` before it could take jobs again. */
  rateLimited(queue: string, seconds: number): void;
  /**
   * A run of a schedule that this process does not run as a job attempt, at the moment the library
   * acts on it (pg-boss forwards each occurrence as a new job, which carries nothing that ties it
   * to its schedule): its lag until now.
   */
  scheduleRun(queue: string, schedule: ScheduleFacts): void;
  /**
   * The scheduler says it missed a run of this schedule at its time (graphile-worker backfills it,
   * pg-boss's `missed: 'once'` policy catches up on it). Never inferred where the library is silent.
   */
  scheduleMissed(queue: string, name: string): void;
  /** Reports a fault of the adapter through `diag`, once per message. */
  warn(message: string, error?: unknown): void;
}
