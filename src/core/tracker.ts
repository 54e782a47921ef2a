import type { Attributes } from '@opentelemetry/api';
import { ATTR_MESSAGING_DESTINATION_NAME, ATTR_MESSAGING_SYSTEM } from '../semconv.js';
import { CappedRegistry } from './cardinality.js';
import { JobSeries } from './series.js';

/** Reads the current concurrency limit of one worker. */
export type ConcurrencySource = () => number;

/** One queue as this process sees it: its job series (names capped) and its workers. */
export class QueueEntry {
  readonly attributes: Attributes;
  readonly series: CappedRegistry<JobSeries>;
  readonly workers = new Set<ConcurrencySource>();
  /** Jobs of a library without job names: one series with no `queue.job.name`. */
  private unnamedSeries: JobSeries | undefined;

  constructor(system: string, readonly name: string, maxJobNames: number) {
    this.attributes = { [ATTR_MESSAGING_SYSTEM]: system, [ATTR_MESSAGING_DESTINATION_NAME]: name };
    this.series = new CappedRegistry(maxJobNames, (jobName) => new JobSeries(this.attributes, jobName));
  }

  /** The series of a job name, or of the queue's unnamed jobs when `jobName` is undefined. */
  seriesOf(jobName: string | undefined): JobSeries {
    if (jobName !== undefined) return this.series.get(jobName);
    return (this.unnamedSeries ??= new JobSeries(this.attributes, undefined));
  }

  /** Every series of the queue, named and unnamed. */
  *allSeries(): IterableIterator<JobSeries> {
    yield* this.series.values();
    if (this.unnamedSeries !== undefined) yield this.unnamedSeries;
  }

  /** Sum of the concurrency limits of this process's workers on the queue (0 when none runs). */
  concurrency(): number {
    let total = 0;
    for (const read of this.workers) {
      const value = read();
      if (Number.isFinite(value) && value > 0) total += value;
    }
    return total;
  }
}

/**
 * The running jobs and completed totals of every queue seen by one instrumentation. Queues and
 * series are kept for the life of the process so that a queue or job name that goes quiet is
 * observed as 0, never left at its last value.
 */
export class Tracker {
  private readonly queues = new Map<string, QueueEntry>();

  constructor(
    private readonly system: string,
    private readonly maxJobNames: () => number,
  ) {}

  queue(name: string): QueueEntry {
    let entry = this.queues.get(name);
    if (entry === undefined) {
      entry = new QueueEntry(this.system, name, this.maxJobNames());
      this.queues.set(name, entry);
    }
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

  allQueues(): IterableIterator<QueueEntry> {
    return this.queues.values();
  }
}
