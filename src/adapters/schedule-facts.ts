/**
 * Which schedule a job is a run of, and when that run was due, read from what the library stores
 * with the job itself (no round trip). Each reader returns undefined for a job that is not a
 * scheduled run, and for every attempt but a run's first: a retry is not late, it is retried.
 * What each library stores, and what it does not, is in docs/schedules.md.
 */
import type { ScheduleFacts } from '../core/seam.js';
import { finiteNumber, readNumber, readProperty, readString } from '../safe.js';

/** What {@link bullmqSchedule} reads of a BullMQ job, as the adapter read it. */
export interface BullMQJobFields {
  id: unknown;
  opts: unknown;
  attemptsMade: unknown;
  attemptsStarted: unknown;
  repeatJobKey: unknown;
}

/** The occurrence a BullMQ or Bull repeat job id (`repeat:<key>:<millis>`) was created for. */
function repeatIdMillis(id: unknown): number | undefined {
  if (typeof id !== 'string' || !id.startsWith('repeat:')) return undefined;
  const tail = id.slice(id.lastIndexOf(':') + 1);
  if (!/^\d{1,16}$/.test(tail)) return undefined;
  const millis = Number(tail);
  return Number.isSafeInteger(millis) && millis > 0 ? millis : undefined;
}

/**
 * BullMQ 5 and 6: a run of a job scheduler (`upsertJobScheduler`) or, in BullMQ 5, of a repeatable
 * job (`opts.repeat`) carries `repeatJobKey` (the scheduler id, or the repeat key) and the id
 * `repeat:<key>:<millis>`, where `millis` is the occurrence the run was made for (BullMQ's Lua
 * scripts name the job after it, `every` offsets included). BullMQ 5's legacy `Repeat` class, and
 * only it, also stores that occurrence in `opts.prevMillis`, and delays the run by
 * `opts.repeat.offset` beyond it (set by `immediately`).
 */
export function bullmqSchedule(job: BullMQJobFields): ScheduleFacts | undefined {
  const key = job.repeatJobKey;
  if (typeof key !== 'string' || key === '') return undefined;
  // A retry, or a run back from a stall: not the run's first start.
  if ((finiteNumber(job.attemptsMade) ?? 0) > 0 || (finiteNumber(job.attemptsStarted) ?? 1) > 1) return undefined;
  const millis = repeatIdMillis(job.id);
  if (millis === undefined) return undefined;
  const opts = job.opts;
  const offset = readNumber(readProperty(opts, 'repeat'), 'offset');
  const shift = readProperty(opts, 'prevMillis') === millis && offset !== undefined ? offset : 0;
  return { name: key, scheduledAt: millis + shift };
}

/**
 * Bull 4: a repeatable job's run (`opts.repeat`) carries its repeat key in `opts.repeat.key`
 * (`name:jobId:endDate:tz:cron`, or `name:jobId:endDate:every`: what `getRepeatableJobs()` lists
 * and `removeRepeatableByKey()` takes) and the occurrence it was made for in `opts.prevMillis`.
 */
export function bullSchedule(job: object): ScheduleFacts | undefined {
  if ((readNumber(job, 'attemptsMade') ?? 0) > 0) return undefined;
  const opts = readProperty(job, 'opts');
  const key = readString(readProperty(opts, 'repeat'), 'key');
  const millis = readNumber(opts, 'prevMillis');
  if (key === undefined || key === '' || millis === undefined || millis <= 0) return undefined;
  return { name: key, scheduledAt: millis };
}

/** The `_cron` field graphile-worker adds to the payload of every job its crontab makes. */
function graphileCron(job: object): { ts: number; backfilled: boolean } | undefined {
  const cron = readProperty(readProperty(job, 'payload'), '_cron');
  const ts = readString(cron, 'ts');
  const at = ts === undefined ? NaN : Date.parse(ts);
  return Number.isFinite(at) ? { ts: at, backfilled: readProperty(cron, 'backfilled') === true } : undefined;
}

/**
 * graphile-worker 0.18: a job its crontab made carries `_cron: { ts, backfilled }` in its payload:
 * `ts` the minute it was due. The crontab item's own identifier is not stored with the job, so the
 * schedule is named by the task identifier.
 */
export function graphileSchedule(job: object): ScheduleFacts | undefined {
  if ((readNumber(job, 'attempts') ?? 1) > 1) return undefined;
  const cron = graphileCron(job);
  const task = readString(job, 'task_identifier');
  return cron === undefined || task === undefined || task === '' ? undefined : { name: task, scheduledAt: cron.ts };
}

/**
 * The schedule whose missed run this job is, on its first attempt: graphile-worker's backfill
 * (`?fill=` / `backfillPeriod`) made it because the crontab missed its minute (no runner was up).
 */
export function graphileMissedRun(job: object): string | undefined {
  if (graphileCron(job)?.backfilled !== true) return undefined;
  return graphileSchedule(job)?.name;
}
