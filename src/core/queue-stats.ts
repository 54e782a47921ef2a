import type { Attributes, DiagLogger } from '@opentelemetry/api';
import { JOB_STATES, type JobState, type QueueStateReading, type QueueStateResult, type QueueStateSource } from './seam.js';

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
  queue: string;
  source: QueueStateSource;
  sets: StateAttributes;
  reading: QueueStateReading | undefined;
  readAt: number;
  /** When the next read is due (epoch ms). */
  nextAt: number;
  /** Reads made so far. */
  reads: number;
  /** Waiting for a read slot, or reading. */
  inFlight: boolean;
  /** This process has held the lease: once it loses it, it reports zeros, not stale values. */
  wasLeader: boolean;
  leader: boolean;
  /** Its failure has been warned (until a read succeeds). */
  failing: boolean;
  /** Reads failed in a row. */
  failures: number;
  /** When the last read succeeded (or the queue was registered). */
  okAt: number;
  /** Why the queue cannot be read, once warned. */
  unavailable: string | undefined;
  /** The reading's notice, once warned. */
  notice: string | undefined;
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
/** Reads of one process in flight at once: a burst of queues (500 at startup) waits its turn. */
export const MAX_CONCURRENT_READS = 8;
/** Queues whose failures are warned one by one; beyond, one summary. */
const WARNED_FAILURES = 3;

/**
 * How long a lease lasts: one interval, plus a margin for a holder whose next read runs late (the
 * read timeout, at least a quarter interval). A holder renews every interval; when it dies, the
 * lease runs out within about one interval and a margin, and the others try right then.
 */
export function leaseMs(intervalMs: number, timeoutMs: number): number {
  return intervalMs + Math.max(timeoutMs, Math.round(intervalMs / 4));
}

const isReading = (r: QueueStateResult): r is QueueStateReading => r != null && !('kind' in r);

/**
 * Queue depth by state and the oldest ages, read at most once per interval per queue however
 * many collections happen, by one process of the cluster (the lease holder), never blocking a
 * collection. Reads run on a timer, once per interval per queue, while collections keep
 * happening: a collection reports the latest reading, at most one interval old, and never waits
 * for the store. A read that fails or times out leaves the state metrics out (not zero) until one
 * succeeds.
 *
 * Timing: the holder reads every interval; a process that does not hold the lease tries again when
 * the store says the lease runs out (Redis), or at a random point of the next interval (PostgreSQL,
 * whose lock is released as soon as its holder's connection dies), so the survivors of a dead holder
 * are not in step and one of them takes over within about one interval. A queue's reads after its
 * first are spread over half an interval, so many queues watched at once are not read in bursts;
 * at most {@link MAX_CONCURRENT_READS} reads run at once, and a read's timeout starts when it does,
 * once its connection is ready and it has a slot: a process that starts hundreds of queues at once
 * reads them all, a few at a time, instead of timing them all out while they connect.
 */
export class QueueStats {
  private readonly entries = new Map<string, Entry>();
  readonly owner = `${process.pid}-${Math.random().toString(36).slice(2, 10)}`;
  private lastCollectAt = -Infinity;
  /** Reads waiting for a slot. */
  private readonly waiting: Array<() => void> = [];
  private running = 0;
  private failureSummaryWarned = false;
  /** Stopped (the instrumentation is disabled) until the next collection. */
  private stopped = false;

  constructor(
    private readonly options: () => QueueStatsOptions,
    private readonly diag: DiagLogger,
  ) {}

  /** The first source registered for a queue is kept; a queue is read once however many objects point at it. */
  register(queue: string, sets: StateAttributes, source: QueueStateSource): void {
    if (this.entries.has(queue)) return;
    const entry: Entry = {
      queue,
      source,
      sets,
      reading: undefined,
      readAt: 0,
      nextAt: Date.now(),
      reads: 0,
      inFlight: false,
      wasLeader: false,
      leader: false,
      failing: false,
      failures: 0,
      okAt: Date.now(),
      unavailable: undefined,
      notice: undefined,
      timer: undefined,
    };
    this.entries.set(queue, entry);
    this.enqueue(entry); // so the first collection has values
  }

  has(queue: string): boolean {
    return this.entries.has(queue);
  }

  /** Called by each collection: returns what to report now, and keeps the reads going. */
  collect(): QueueStateReport[] {
    const now = Date.now();
    this.lastCollectAt = now;
    this.stopped = false;
    const { intervalMs } = this.options();
    const reports: QueueStateReport[] = [];
    for (const entry of this.entries.values()) {
      if (now >= entry.nextAt) this.enqueue(entry);
      else this.schedule(entry, entry.nextAt - now);
      if (!entry.leader) {
        // Another process reports this queue. If this one did before, zeros replace its last
        // values, which the SDK would otherwise keep exporting and sums would count twice.
        if (entry.wasLeader) reports.push(this.report(entry, zerosLike(entry.reading), undefined, undefined, now, entry.reading));
        continue;
      }
      const reading = entry.reading;
      // Store slow or gone: leave the state out rather than report numbers that are not true now.
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

  /** Stops the reads and gives up the leases (the instrumentation is disabled); the next collection resumes them. */
  stop(): void {
    this.stopped = true;
    for (const entry of this.entries.values()) {
      clearTimeout(entry.timer);
      entry.timer = undefined;
      this.release(entry);
    }
  }

  /** Whether a metric reader is collecting: reads for nobody would only load the queue's store. */
  private collecting(now: number): boolean {
    return !this.stopped && now - this.lastCollectAt < Math.max(IDLE_MS, 4 * this.options().intervalMs);
  }

  /** Reads `entry` again in `delayMs`, unless a read is already scheduled. */
  private schedule(entry: Entry, delayMs: number): void {
    if (entry.timer !== undefined) return;
    entry.timer = setTimeout(() => {
      entry.timer = undefined;
      if (this.entries.get(entry.queue) !== entry) return;
      if (this.collecting(Date.now())) this.enqueue(entry);
      else this.release(entry); // nobody collects: let a process that does take the lease
    }, Math.max(0, delayMs));
    entry.timer.unref();
  }

  private release(entry: Entry): void {
    if (!entry.leader) return;
    entry.leader = false;
    try {
      void Promise.resolve(entry.source.release?.(this.owner)).catch(() => {});
    } catch {
      // a source that cannot release lets its lease run out
    }
  }

  /** Starts a read of `entry`, unless one is under way. */
  private enqueue(entry: Entry): void {
    if (entry.inFlight) return;
    entry.inFlight = true;
    clearTimeout(entry.timer);
    entry.timer = undefined;
    void this.readNow(entry).finally(() => {
      entry.inFlight = false;
    });
  }

  /** Waits for one of the {@link MAX_CONCURRENT_READS} read slots; resolves with its release. */
  private acquire(): Promise<() => void> {
    return new Promise((resolve) => {
      const grant = () => {
        this.running++;
        let released = false;
        resolve(() => {
          if (released) return;
          released = true;
          this.running--;
          this.waiting.shift()?.();
        });
      };
      if (this.running < MAX_CONCURRENT_READS) grant();
      else this.waiting.push(grant);
    });
  }

  private async readNow(entry: Entry): Promise<void> {
    const { intervalMs, timeoutMs, leader } = this.options();
    const started = Date.now();
    // Until the read says otherwise, the next one is an interval away.
    entry.nextAt = started + intervalMs;
    const owner = leader ? this.owner : `${this.owner}-${Math.random()}`;
    // Two deadlines: for the source to have a connection (a process starting hundreds of queues
    // connects them all at once), then, once it begins and holds a read slot, the read timeout.
    const connectMs = Math.max(intervalMs, 10 * timeoutMs);
    let timer: NodeJS.Timeout | undefined;
    let fail!: (error: Error) => void;
    let settled = false;
    let releaseSlot: (() => void) | undefined;
    const deadline = new Promise<never>((_, reject) => {
      fail = reject;
    });
    const arm = (ms: number, message: string) => {
      clearTimeout(timer);
      timer = setTimeout(() => fail(new Error(message)), ms);
      timer.unref();
    };
    arm(connectMs, `not started within ${connectMs} ms (no connection, or other reads ahead of it)`);
    let begun = false;
    const begin = async (): Promise<void> => {
      if (settled) throw new Error('read abandoned');
      if (begun) return;
      begun = true;
      const release = await this.acquire();
      if (settled) {
        release();
        throw new Error('read abandoned');
      }
      releaseSlot = release;
      arm(timeoutMs, `no answer within ${timeoutMs} ms`);
    };
    let read: Promise<QueueStateResult>;
    try {
      read = entry.source.read({ owner, leaseMs: leader ? leaseMs(intervalMs, timeoutMs) : 0, timeoutMs, intervalMs, begin });
    } catch (error) {
      read = Promise.reject(error);
    }
    // A read that never settles (client gone) must not pin its promise chain's error.
    read.catch(() => {});
    try {
      const result = await Promise.race([read, deadline]).finally(() => {
        settled = true;
        releaseSlot?.();
      });
      if (result === null) {
        // Closed here: stop reading it (watched again if reopened), and let another process lead.
        clearTimeout(entry.timer);
        this.entries.delete(entry.queue);
        this.release(entry);
        return;
      }
      this.recovered(entry);
      entry.reads++;
      if (isReading(result)) {
        entry.unavailable = undefined;
        if (result.notice !== undefined && result.notice !== entry.notice) this.diag.warn(`queue state of "${entry.queue}": ${result.notice}`);
        entry.notice = result.notice;
        entry.leader = true;
        entry.wasLeader = true;
        entry.reading = result;
        entry.readAt = Date.now();
        // After the first read, a random phase: queues watched together are not read together.
        entry.nextAt = started + (entry.reads === 1 ? intervalMs * (0.5 + Math.random() / 2) : intervalMs);
      } else if (result === undefined || result.kind === 'held') {
        entry.unavailable = undefined;
        entry.leader = false;
        const retryIn = result?.retryInMs;
        // Right after the holder's lease runs out (plus a little, so survivors do not all try at
        // once); without that, at a random point of the next interval.
        entry.nextAt =
          retryIn !== undefined && Number.isFinite(retryIn)
            ? Date.now() + Math.min(2 * intervalMs, Math.max(intervalMs / 4, retryIn + Math.random() * Math.min(1_000, intervalMs / 10)))
            : started + intervalMs * (0.5 + Math.random() / 2);
      } else {
        entry.leader = false;
        if (entry.unavailable !== result.reason) this.diag.warn(`queue state of "${entry.queue}" is not reported: ${result.reason}`);
        entry.unavailable = result.reason;
      }
    } catch (error) {
      this.failed(entry, error, intervalMs);
    } finally {
      clearTimeout(timer);
      if (this.entries.get(entry.queue) === entry) {
        if (this.collecting(Date.now())) this.schedule(entry, entry.nextAt - Date.now());
        else if (this.stopped) this.release(entry); // a read that ended after stop() took the lease
      }
    }
  }

  /**
   * A read failed: it is tried again soon (after 1, 2, 4 ... seconds, at most an interval), and
   * warned once the queue has gone three intervals without a good read (when its state starts
   * being left out), so a transient failure (a process connecting hundreds of queues at startup,
   * say) is not worth a warning.
   */
  private failed(entry: Entry, error: unknown, intervalMs: number): void {
    entry.failures++;
    entry.nextAt = Date.now() + Math.min(intervalMs, 1_000 * 2 ** (entry.failures - 1));
    if (entry.failing || Date.now() - entry.okAt < 3 * intervalMs) return;
    entry.failing = true;
    let failing = 0;
    for (const e of this.entries.values()) if (e.failing) failing++;
    if (failing <= WARNED_FAILURES) {
      this.diag.warn(`queue state of "${entry.queue}" not read; its state metrics are left out until a read succeeds`, error);
    } else if (!this.failureSummaryWarned) {
      this.failureSummaryWarned = true;
      this.diag.warn(`queue state of more queues not read (${failing} so far); their state metrics are left out until reads succeed`);
    }
  }

  private recovered(entry: Entry): void {
    entry.failures = 0;
    entry.okAt = Date.now();
    if (!entry.failing) return;
    entry.failing = false;
    for (const e of this.entries.values()) if (e.failing) return;
    this.failureSummaryWarned = false;
  }
}
