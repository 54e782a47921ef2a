import type { Attributes, DiagLogger } from '@opentelemetry/api';
import { JOB_STATES, type JobState, type QueueStateReading, type QueueStateSource } from './seam.js';

/** A queue's attribute sets: its own, and those of `queue.job.count` per state (budgeted). */
export interface StateAttributes {
  readonly attributes: Attributes;
  stateAttributes(state: JobState): Attributes;
}

export interface QueueStatsOptions {
  intervalMs: number;
  timeoutMs: number;
  /** One reader per cluster (a lease); false: every process reads and reports. */
  leader: boolean;
}

/** What the collection callback reports for one queue. */
export interface QueueStateReport {
  attributes: Attributes;
  counts: ReadonlyArray<{ value: number; attributes: Attributes }>;
  oldestAgeS: number | undefined;
  failedOldestAgeS: number | undefined;
}

interface Entry {
  source: QueueStateSource;
  sets: StateAttributes;
  reading: QueueStateReading | undefined;
  readAt: number;
  lastAttempt: number;
  inFlight: boolean;
  /** This process has held the lease: once it loses it, it reports zeros, not stale values. */
  wasLeader: boolean;
  leader: boolean;
  failing: boolean;
  /** The next read, while collections keep happening. */
  timer: NodeJS.Timeout | undefined;
}

const ZERO_COUNTS = Object.fromEntries(JOB_STATES.map((s) => [s, 0])) as Record<JobState, number>;

/** Zeros for the states a reading had (a library's own set of states). */
function zerosLike(reading: QueueStateReading | undefined): Partial<Record<JobState, number>> {
  if (reading === undefined) return ZERO_COUNTS;
  const zeros: Partial<Record<JobState, number>> = {};
  for (const state of JOB_STATES) if (reading.counts[state] !== undefined) zeros[state] = 0;
  return zeros;
}

/** Reads stop when no collection has happened for this long (a reader shut down); the next resumes them. */
const IDLE_MS = 10 * 60_000;

/**
 * Queue depth by state and the oldest ages, read at most once per interval per queue however
 * many collections happen, by one process of the cluster (the lease holder), never blocking a
 * collection. Reads run on a timer, once per interval per queue, while collections keep
 * happening: a collection reports the latest reading, at most one interval old, and never waits
 * for Redis. (Reading when a collection finds the values due, and reporting at the next one,
 * would show every scrape the state of the previous scrape.) A read that fails or times out
 * leaves the state metrics out (not zero) until one succeeds.
 */
export class QueueStats {
  private readonly entries = new Map<string, Entry>();
  readonly owner = `${process.pid}-${Math.random().toString(36).slice(2, 10)}`;
  private lastCollectAt = -Infinity;

  constructor(
    private readonly options: () => QueueStatsOptions,
    private readonly diag: DiagLogger,
  ) {}

  /** The first source registered for a queue is kept; a queue is read once however many objects point at it. */
  register(queue: string, sets: StateAttributes, source: QueueStateSource): void {
    if (this.entries.has(queue)) return;
    const entry: Entry = {
      source,
      sets,
      reading: undefined,
      readAt: 0,
      lastAttempt: 0,
      inFlight: false,
      wasLeader: false,
      leader: false,
      failing: false,
      timer: undefined,
    };
    this.entries.set(queue, entry);
    this.refresh(queue, entry, Date.now()); // so the first collection has values
  }

  has(queue: string): boolean {
    return this.entries.has(queue);
  }

  /** Called by each collection: returns what to report now, and keeps the reads going. */
  collect(): QueueStateReport[] {
    const now = Date.now();
    this.lastCollectAt = now;
    const { intervalMs } = this.options();
    const reports: QueueStateReport[] = [];
    for (const [queue, entry] of this.entries) {
      if (now - entry.lastAttempt >= intervalMs) this.refresh(queue, entry, now);
      else this.schedule(queue, entry, entry.lastAttempt + intervalMs - now);
      if (!entry.leader) {
        // Another process reports this queue. If this one did before, zeros replace its last
        // values, which the SDK would otherwise keep exporting and sums would count twice.
        if (entry.wasLeader) reports.push(this.report(entry, zerosLike(entry.reading), undefined, undefined, now, entry.reading));
        continue;
      }
      const reading = entry.reading;
      // Redis slow or gone: leave the state out rather than report numbers that are not true now.
      if (reading === undefined || now - entry.readAt > 3 * intervalMs) continue;
      reports.push(this.report(entry, reading.counts, reading.oldestReadyAt, reading.oldestFailedAt, now, reading));
    }
    return reports;
  }

  private report(
    entry: Entry,
    counts: Partial<Record<JobState, number>>,
    oldestReadyAt: number | undefined,
    oldestFailedAt: number | undefined,
    now: number,
    shape: QueueStateReading | undefined,
  ): QueueStateReport {
    // States past the budget share one `_OTHER` set: their counts are summed, not overwritten.
    const byAttributes = new Map<Attributes, number>();
    for (const state of JOB_STATES) {
      const value = counts[state];
      if (value === undefined) continue;
      const attributes = entry.sets.stateAttributes(state);
      byAttributes.set(attributes, (byAttributes.get(attributes) ?? 0) + value);
    }
    const reported = [...byAttributes].map(([attributes, value]) => ({ value, attributes }));
    return {
      attributes: entry.sets.attributes,
      counts: reported,
      oldestAgeS:
        shape?.hasOldest === false
          ? undefined
          : oldestReadyAt === undefined ? (entry.leader ? 0 : undefined) : Math.max(0, now - oldestReadyAt) / 1000,
      failedOldestAgeS:
        shape?.hasFailedOldest === false
          ? undefined
          : oldestFailedAt === undefined ? (entry.leader ? 0 : undefined) : Math.max(0, now - oldestFailedAt) / 1000,
    };
  }

  /** Stops the reads (the instrumentation is disabled); the next collection resumes them. */
  stop(): void {
    for (const entry of this.entries.values()) {
      clearTimeout(entry.timer);
      entry.timer = undefined;
    }
  }

  /** Whether a metric reader is collecting: reads for nobody would only load the queue's store. */
  private collecting(now: number): boolean {
    return now - this.lastCollectAt < Math.max(IDLE_MS, 4 * this.options().intervalMs);
  }

  /** Reads `queue` again in `delayMs`, unless a read is already scheduled. */
  private schedule(queue: string, entry: Entry, delayMs: number): void {
    if (entry.timer !== undefined) return;
    entry.timer = setTimeout(() => {
      entry.timer = undefined;
      const now = Date.now();
      if (this.entries.get(queue) === entry && this.collecting(now)) this.refresh(queue, entry, now);
    }, delayMs);
    entry.timer.unref();
  }

  private refresh(queue: string, entry: Entry, now: number): void {
    if (entry.inFlight) return;
    const { intervalMs, timeoutMs, leader } = this.options();
    entry.inFlight = true;
    entry.lastAttempt = now;
    if (this.collecting(now)) this.schedule(queue, entry, intervalMs);
    // The lease outlives two intervals, so a holder that dies is replaced within about two.
    const owner = leader ? this.owner : `${this.owner}-${Math.random()}`;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
      timer.unref();
    });
    let read: Promise<QueueStateReading | undefined | null>;
    try {
      read = entry.source.read(owner, leader ? 2 * intervalMs + timeoutMs : 0);
    } catch (error) {
      read = Promise.reject(error);
    }
    Promise.race([read, timeout])
      .then(
        (reading) => {
          if (reading === null) {
            // Closed here: stop reading it (watched again if reopened).
            clearTimeout(entry.timer);
            this.entries.delete(queue);
            return;
          }
          entry.failing = false;
          entry.leader = reading !== undefined;
          if (reading !== undefined) {
            entry.wasLeader = true;
            entry.reading = reading;
            entry.readAt = Date.now();
          }
        },
        (error: unknown) => {
          if (!entry.failing) this.diag.warn(`queue state of "${queue}" not read; its state metrics are left out until a read succeeds`, error);
          entry.failing = true;
        },
      )
      .finally(() => {
        clearTimeout(timer);
        entry.inFlight = false;
      });
    // A read that never settles (client gone) must not pin its promise chain's error.
    read.catch(() => {});
  }
}
