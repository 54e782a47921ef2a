/**
 * Every metric and attribute name queue-otel emits, in one place.
 *
 * Stable names come from `@opentelemetry/semantic-conventions`. The messaging names are still
 * "incubating" there, and the incubating entry point is not covered by semver, so, as the
 * OpenTelemetry JS maintainers recommend, they are copied here (values as of semconv 1.45).
 * Names under `queue.` are queue-otel's own: semantic conventions have nothing for job queues yet.
 * The schema these names follow is `SCHEMA_URL`, set on the tracer and the meter; CHANGELOG.md
 * records every change of a name, unit or attribute.
 */
export { ATTR_ERROR_TYPE } from '@opentelemetry/semantic-conventions';

/** The semantic-conventions schema the names below follow (the version they were copied from). */
export const SCHEMA_URL = 'https://opentelemetry.io/schemas/1.45.0';

// Messaging attributes (incubating in semconv; copied).
export const ATTR_MESSAGING_SYSTEM = 'messaging.system';
export const ATTR_MESSAGING_DESTINATION_NAME = 'messaging.destination.name';
export const ATTR_MESSAGING_OPERATION_NAME = 'messaging.operation.name';
export const ATTR_MESSAGING_OPERATION_TYPE = 'messaging.operation.type';
export const ATTR_MESSAGING_MESSAGE_ID = 'messaging.message.id';
export const ATTR_MESSAGING_BATCH_MESSAGE_COUNT = 'messaging.batch.message_count';

// Messaging metrics (incubating in semconv; copied).
export const METRIC_MESSAGING_PROCESS_DURATION = 'messaging.process.duration';
export const METRIC_MESSAGING_CLIENT_CONSUMED_MESSAGES = 'messaging.client.consumed.messages';
export const METRIC_MESSAGING_CLIENT_SENT_MESSAGES = 'messaging.client.sent.messages';
export const METRIC_MESSAGING_CLIENT_OPERATION_DURATION = 'messaging.client.operation.duration';

// queue-otel attributes.
/** The job's name, capped per queue (`_OTHER` past the cap). */
export const ATTR_QUEUE_JOB_NAME = 'queue.job.name';
/** How an attempt ended: `completed`, `retried`, `failed` (no attempt left) or `deferred`. */
export const ATTR_QUEUE_JOB_OUTCOME = 'queue.job.outcome';
/** Why a `deferred` attempt was put off: `delayed`, `waiting`, `waiting_children` or `rate_limited`. */
export const ATTR_QUEUE_JOB_DEFERRAL = 'queue.job.deferral';
/** Span only: 1-based number of this attempt. */
export const ATTR_QUEUE_JOB_ATTEMPT = 'queue.job.attempt';
/** Span only: seconds the job waited between becoming ready and this attempt's start. */
export const ATTR_QUEUE_JOB_WAIT_DURATION = 'queue.job.wait.duration';

/**
 * On `queue.schedule.*`: which schedule a run belongs to (a BullMQ job scheduler id or repeat key,
 * Bull's repeat key, pg-boss's queue and schedule key, graphile-worker's crontab task identifier),
 * capped per queue like job names (`_OTHER` past the cap).
 */
export const ATTR_QUEUE_SCHEDULE_NAME = 'queue.schedule.name';
/** Span only: seconds between the time a scheduled run was due and its start. */
export const ATTR_QUEUE_SCHEDULE_LAG = 'queue.schedule.lag';

/** On `queue.job.count`: the state the jobs are in (`waiting`, `active`, `delayed`, ...). */
export const ATTR_QUEUE_JOB_STATE = 'queue.job.state';
/** Span only: CPU seconds the attempt used (see README for what CPU means in each mode). */
export const ATTR_QUEUE_JOB_CPU_TIME = 'queue.job.cpu.time';
/** Span only: the most memory, in bytes, the attempt was seen to hold. */
export const ATTR_QUEUE_JOB_MEMORY_PEAK = 'queue.job.memory.peak';
/** Span only: the `.cpuprofile` file of this attempt's own CPU samples (option `profileJobs`). */
export const ATTR_QUEUE_JOB_PROFILE_PATH = 'queue.job.profile.path';

// queue-otel metrics.
export const METRIC_QUEUE_JOB_WAIT_DURATION = 'queue.job.wait.duration';
export const METRIC_QUEUE_JOB_ATTEMPTS = 'queue.job.attempts';
export const METRIC_QUEUE_JOB_BUSY_TIME = 'queue.job.busy.time';
export const METRIC_QUEUE_JOB_ACTIVE = 'queue.job.active';
export const METRIC_QUEUE_WORKER_CONCURRENCY = 'queue.worker.concurrency';
export const METRIC_QUEUE_JOB_STALLED = 'queue.job.stalled';
export const METRIC_QUEUE_JOB_CPU_TIME = 'queue.job.cpu.time';
export const METRIC_QUEUE_JOB_MEMORY_USAGE = 'queue.job.memory.usage';
export const METRIC_QUEUE_JOB_MEMORY_PEAK = 'queue.job.memory.peak';
export const METRIC_QUEUE_JOB_COUNT = 'queue.job.count';
export const METRIC_QUEUE_OLDEST_AGE = 'queue.oldest.age';
export const METRIC_QUEUE_FAILED_OLDEST_AGE = 'queue.failed.oldest.age';
export const METRIC_QUEUE_JOB_RUNNING_OLDEST = 'queue.job.running.oldest';
export const METRIC_QUEUE_WORKER_RATE_LIMIT_DURATION = 'queue.worker.rate_limit.duration';
/** Seconds from the time each scheduled run was due until it started (see docs/schedules.md). */
export const METRIC_QUEUE_SCHEDULE_LAG = 'queue.schedule.lag';
/** Runs a scheduler says it missed at their time (graphile-worker backfills, pg-boss catch-ups). */
export const METRIC_QUEUE_SCHEDULE_MISSED = 'queue.schedule.missed';

/** Values of `messaging.operation.name` / `messaging.operation.type`. */
export const OPERATION_SEND = 'send';
/** One message of a batch is created (its own span, which the batch's `send` span links to). */
export const OPERATION_CREATE = 'create';
export const OPERATION_PROCESS = 'process';

/** Job names past the per-queue cap, and error types past their cap, are reported as this. */
export const OTHER = '_OTHER';

/**
 * Histogram buckets in seconds: the semantic-convention buckets for messaging durations,
 * extended up to an hour because jobs, unlike messages, routinely run for minutes.
 */
export const DURATION_BUCKETS_S = [
  0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 30, 60, 120, 300, 600,
  1800, 3600,
];

/** Buckets for `queue.job.memory.peak`: 64 KiB to 4 GiB, powers of four. */
export const MEMORY_BUCKETS_BYTES = [
  2 ** 16, 2 ** 18, 2 ** 20, 2 ** 22, 2 ** 24, 2 ** 26, 2 ** 28, 2 ** 30, 2 ** 32,
];

/** Buckets for `queue.job.attempts`. */
export const ATTEMPT_BUCKETS = [1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 50];
