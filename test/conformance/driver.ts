// What the conformance suite needs from a queue library: how to make a queue, add a job and
// process it with that library's own API. One driver per library (test/conformance/drivers/).
import type { JobState } from '../../src/core/seam.js';
import type { QueueInstrumentationConfig } from '../../src/index.js';
import type { Telemetry } from '../helpers/sdk.js';

/** A job as the processor sees it. */
export interface SeenJob {
  /** The job's name, where the library has names. */
  name: string | undefined;
  /** The job's data, exactly as the processor gets it. */
  data: unknown;
}

export type Processor = (job: SeenJob) => Promise<unknown>;

export interface JobSpec {
  name: string;
  data: Record<string, unknown>;
  /** Runs at most this many times (the first attempt included). Default 1. */
  attempts?: number;
  /** Becomes ready this many milliseconds after it is added. */
  delayMs?: number;
}

export interface TestQueue {
  /** `messaging.destination.name` of its metrics and spans. */
  destination: string;
  /** Adds a job; resolves its id. */
  add(job: JobSpec): Promise<string | undefined>;
  /** Starts processing with the processor given at creation (idempotent). */
  work(): Promise<void>;
  /** Stops processing, removes everything the queue stored. */
  close(): Promise<void>;
}

/** What the library can tell; the suite expects exactly this, no more. */
export interface Features {
  /** Jobs have names (`queue.job.name`); otherwise no job name is reported. */
  jobNames: boolean;
  /**
   * The producer's trace context travels with the job (the process span links to the send span);
   * false where a job has no field for it besides the data the processor receives.
   */
  propagation: boolean;
  /** A retry's ready time is stored, so retries have a wait time too. */
  retryWaitTime: boolean;
  /**
   * The library makes its own `process` and `send` spans and records the messaging.* metrics
   * itself (pg-boss): queue-otel annotates its spans and adds the rest.
   */
  nativeTelemetry?: { scope: string };
  /** States `queue.job.count` reports for a queue; empty when the library's state is not read at all. */
  states: readonly JobState[];
  /** `queue.oldest.age` is reported. */
  oldestAge: boolean;
  /** `queue.failed.oldest.age` is reported. */
  failedOldestAge: boolean;
}

export interface Harness {
  otel: Telemetry;
  /** A queue whose jobs `processor` runs, `concurrency` at a time (default 1); not started. */
  queue(label: string, processor: Processor, options?: { concurrency?: number }): Promise<TestQueue>;
  /** Closes what the harness itself opened (queues are closed by the suite). */
  shutdown(): Promise<void>;
}

export interface Driver {
  /** `messaging.system`. */
  system: string;
  features: Features;
  /** Instruments the library, then loads it the way an application would. */
  start(config?: QueueInstrumentationConfig): Promise<Harness>;
}
