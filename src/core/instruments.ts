import type {
  BatchObservableResult,
  Counter,
  Histogram,
  Meter,
  ObservableCounter,
  ObservableGauge,
  ObservableUpDownCounter,
} from '@opentelemetry/api';
import {
  ATTEMPT_BUCKETS,
  DURATION_BUCKETS_S,
  METRIC_MESSAGING_CLIENT_CONSUMED_MESSAGES,
  METRIC_MESSAGING_CLIENT_OPERATION_DURATION,
  METRIC_MESSAGING_CLIENT_SENT_MESSAGES,
  METRIC_MESSAGING_PROCESS_DURATION,
  METRIC_QUEUE_JOB_ACTIVE,
  METRIC_QUEUE_JOB_ATTEMPTS,
  METRIC_QUEUE_JOB_BUSY_TIME,
  METRIC_QUEUE_JOB_CPU_TIME,
  METRIC_QUEUE_JOB_MEMORY_PEAK,
  METRIC_QUEUE_JOB_MEMORY_USAGE,
  MEMORY_BUCKETS_BYTES,
  METRIC_QUEUE_JOB_STALLED,
  METRIC_QUEUE_JOB_COUNT,
  METRIC_QUEUE_OLDEST_AGE,
  METRIC_QUEUE_FAILED_OLDEST_AGE,
  METRIC_QUEUE_JOB_RUNNING_OLDEST,
  METRIC_QUEUE_JOB_WAIT_DURATION,
  METRIC_QUEUE_WORKER_CONCURRENCY,
  METRIC_QUEUE_WORKER_RATE_LIMIT_DURATION,
  METRIC_QUEUE_SCHEDULE_LAG,
  METRIC_QUEUE_SCHEDULE_MISSED,
} from '../semconv.js';

/** The live instruments a collection observes, handed to the batch callback. */
export interface LiveInstruments {
  consumedMessages: ObservableCounter;
  busyTime: ObservableCounter;
  active: ObservableUpDownCounter;
  concurrency: ObservableUpDownCounter;
  cpuTime: ObservableCounter;
  memoryUsage: ObservableUpDownCounter;
  jobCount: ObservableUpDownCounter;
  oldestAge: ObservableGauge;
  failedOldestAge: ObservableGauge;
  runningOldest: ObservableGauge;
}

/**
 * Every instrument of the schema, created from one meter. Rebuilt when the meter provider
 * changes (the instrumentation is often constructed before the SDK starts), and the old batch
 * callback is removed so two providers never both read the tracker.
 */
export class Instruments {
  readonly processDuration: Histogram;
  readonly sentMessages: Counter;
  readonly operationDuration: Histogram;
  readonly waitDuration: Histogram;
  readonly attempts: Histogram;
  readonly stalled: Counter;
  readonly memoryPeak: Histogram;
  readonly rateLimitDuration: Histogram;
  readonly scheduleLag: Histogram;
  readonly scheduleMissed: Counter;
  private readonly live: LiveInstruments;
  private readonly callback: (result: BatchObservableResult) => void | Promise<void>;

  constructor(
    private readonly meter: Meter,
    observe: (result: BatchObservableResult, live: LiveInstruments) => void | Promise<void>,
  ) {
    const seconds = { unit: 's', advice: { explicitBucketBoundaries: DURATION_BUCKETS_S } };
    this.processDuration = meter.createHistogram(METRIC_MESSAGING_PROCESS_DURATION, {
      ...seconds,
      description: 'Duration of each job attempt, from its start until its outcome was recorded.',
    });
    this.sentMessages = meter.createCounter(METRIC_MESSAGING_CLIENT_SENT_MESSAGES, {
      unit: '{message}',
      description: 'Jobs added by producers.',
    });
    this.operationDuration = meter.createHistogram(METRIC_MESSAGING_CLIENT_OPERATION_DURATION, {
      ...seconds,
      description: 'Duration of producer operations (add, addBulk, flows).',
    });
    this.waitDuration = meter.createHistogram(METRIC_QUEUE_JOB_WAIT_DURATION, {
      ...seconds,
      description: 'Time from when a job became ready to run until its attempt started.',
    });
    this.attempts = meter.createHistogram(METRIC_QUEUE_JOB_ATTEMPTS, {
      unit: '{attempt}',
      advice: { explicitBucketBoundaries: ATTEMPT_BUCKETS },
      description: 'Attempts a job needed, recorded when it completed or finally failed.',
    });
    this.stalled = meter.createCounter(METRIC_QUEUE_JOB_STALLED, {
      unit: '{job}',
      description: 'Jobs found stalled: their worker stopped renewing the lock.',
    });
    this.memoryPeak = meter.createHistogram(METRIC_QUEUE_JOB_MEMORY_PEAK, {
      unit: 'By',
      advice: { explicitBucketBoundaries: MEMORY_BUCKETS_BYTES },
      description: 'The most memory a job was seen to hold, recorded when it ends.',
    });
    this.rateLimitDuration = meter.createHistogram(METRIC_QUEUE_WORKER_RATE_LIMIT_DURATION, {
      ...seconds,
      description: "Time a worker was held back by its queue's rate limiter, each time it was: the count says how often.",
    });
    this.scheduleLag = meter.createHistogram(METRIC_QUEUE_SCHEDULE_LAG, {
      ...seconds,
      description: 'Time from when each run of a schedule (job scheduler, repeatable job, cron entry) was due until it started.',
    });
    this.scheduleMissed = meter.createCounter(METRIC_QUEUE_SCHEDULE_MISSED, {
      unit: '{run}',
      description: 'Runs of a schedule that its scheduler says it missed at their time (a backfill, a catch-up).',
    });
    this.live = {
      // Deliveries, as the messaging conventions define the counter: incremented when an attempt
      // starts. Observable: counted per (queue, job name) by the tracker and read at collection,
      // which exports the same monotonic sum as a counter without an SDK record per job. Outcomes
      // are the count of messaging.process.duration by queue.job.outcome.
      consumedMessages: meter.createObservableCounter(METRIC_MESSAGING_CLIENT_CONSUMED_MESSAGES, {
        unit: '{message}',
        description: 'Job deliveries: attempts started.',
      }),
      busyTime: meter.createObservableCounter(METRIC_QUEUE_JOB_BUSY_TIME, {
        unit: 's',
        description: 'Seconds of job work, running jobs included up to the moment of collection.',
      }),
      // Additive values are up-down counters: a sum over processes is then right by the data model.
      active: meter.createObservableUpDownCounter(METRIC_QUEUE_JOB_ACTIVE, {
        unit: '{job}',
        description: 'Jobs running now.',
      }),
      concurrency: meter.createObservableUpDownCounter(METRIC_QUEUE_WORKER_CONCURRENCY, {
        unit: '{job}',
        description: 'Concurrency limit of the workers of this process.',
      }),
      cpuTime: meter.createObservableCounter(METRIC_QUEUE_JOB_CPU_TIME, {
        unit: 's',
        description: 'CPU time attributed to jobs, running jobs included up to the moment of collection.',
      }),
      memoryUsage: meter.createObservableUpDownCounter(METRIC_QUEUE_JOB_MEMORY_USAGE, {
        unit: 'By',
        description: 'Memory held by running jobs, summed by job name.',
      }),
      jobCount: meter.createObservableUpDownCounter(METRIC_QUEUE_JOB_COUNT, {
        unit: '{job}',
        description: 'Jobs in the queue by state, read by one process of the cluster.',
      }),
      // Ages are not additive: gauges.
      oldestAge: meter.createObservableGauge(METRIC_QUEUE_OLDEST_AGE, {
        unit: 's',
        description: 'How long the oldest job ready to run has been waiting.',
      }),
      failedOldestAge: meter.createObservableGauge(METRIC_QUEUE_FAILED_OLDEST_AGE, {
        unit: 's',
        description: 'Age of the oldest job in the failed (dead-letter) set.',
      }),
      runningOldest: meter.createObservableGauge(METRIC_QUEUE_JOB_RUNNING_OLDEST, {
        unit: 's',
        description: 'How long the longest-running job of this process has run (stuck jobs).',
      }),
    };
    this.callback = (result) => observe(result, this.live);
    meter.addBatchObservableCallback(this.callback, Object.values(this.live));
  }

  dispose(): void {
    this.meter.removeBatchObservableCallback(this.callback, Object.values(this.live));
  }
}
