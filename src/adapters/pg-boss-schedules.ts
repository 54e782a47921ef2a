/**
 * pg-boss 12 schedules (`schedule(name, cron, data, { key, tz, missed })`): their lag and missed
 * runs, read where pg-boss itself handles them (dist/timekeeper.js). It reports to the core
 * through the seam and knows nothing of OpenTelemetry.
 *
 * What pg-boss does, and why this is observed where it is:
 * - A cron pass (one instance of the cluster at a time, every `cronMonitorIntervalSeconds`) finds
 *   the occurrences due in the last minute and files each as a job of its internal
 *   `__pgboss__send-it` queue whose data names the schedule (`name`, `key`) and the occurrence's
 *   minute (`slot`, UTC). Any instance's send-it worker then `send()`s the run's job to the queue:
 *   `Timekeeper.prototype.onSendIt(jobs)`. That job is a plain send of the schedule's data, with
 *   nothing that ties it to its schedule or its occurrence, so a worker cannot tell it from any
 *   other job of the queue. The lag is therefore the time from the occurrence until pg-boss acts
 *   on it (onSendIt starts); the run's own wait in its queue is `queue.job.wait.duration`.
 * - A schedule with `missed: 'once'` (pg-boss 12.38) owes a catch-up run for a gap no pass
 *   covered (every instance down, or not scheduling): `Timekeeper.prototype.missedOccurrence`
 *   returns that occurrence (the latest one of the gap) and null otherwise. Under the default
 *   `missed: 'skip'` pg-boss does not look for missed occurrences, so none is reported.
 */
import { createRequire } from 'node:module';
import type { JobTelemetry } from '../core/seam.js';
import { readProperty, readString } from '../safe.js';
import { selfUrl } from '../self-url.js';
import { type AnyFunction, type MethodPatch, callOriginal } from './patch.js';

/** The exports of `pg-boss/dist/timekeeper.js`: the Timekeeper class is its default export. */
export interface TimekeeperExports {
  default?: { prototype: object };
}

/** A schedule's name on metrics: its queue, and its key when it has one (`report:daily`). */
function scheduleName(name: string, key: unknown): string {
  return typeof key === 'string' && key !== '' ? `${name}:${key}` : name;
}

/** The minute a send-it job names (`slot`, `YYYY-MM-DD HH:MM:SS` in UTC), as epoch ms. */
function slotTime(slot: unknown): number | undefined {
  if (typeof slot !== 'string' || !/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/.test(slot)) return undefined;
  const t = Date.parse(`${slot.replace(' ', 'T')}Z`);
  return Number.isFinite(t) ? t : undefined;
}

/** The wraps of one loaded copy of pg-boss's timekeeper (methods a version lacks are skipped). */
export function pgBossTimekeeperPatches(exports: TimekeeperExports, telemetry: JobTelemetry): MethodPatch[] {
  const prototype = readProperty(readProperty(exports, 'default'), 'prototype');
  if (prototype === null || typeof prototype !== 'object') return [];
  return [
    { target: prototype, method: 'onSendIt', wrap: (o) => wrapOnSendIt(o, telemetry) },
    { target: prototype, method: 'missedOccurrence', wrap: (o) => wrapMissedOccurrence(o, telemetry) },
  ];
}

/** pg-boss acts on due occurrences: each one's lag, from its minute until now. */
function wrapOnSendIt(original: AnyFunction, telemetry: JobTelemetry): AnyFunction {
  return function onSendIt(this: unknown, jobs: unknown): unknown {
    if (Array.isArray(jobs)) {
      for (const job of jobs) {
        const data = readProperty(job, 'data');
        const name = readString(data, 'name');
        const at = slotTime(readProperty(data, 'slot')); // absent on a job filed by pg-boss < 12.37
        if (name !== undefined && at !== undefined) {
          telemetry.scheduleRun(name, { name: scheduleName(name, readProperty(data, 'key')), scheduledAt: at });
        }
      }
    }
    return callOriginal(original, this, arguments);
  };
}

/** A cron pass found a missed occurrence it owes a catch-up run for (policy `missed: 'once'`). */
function wrapMissedOccurrence(original: AnyFunction, telemetry: JobTelemetry): AnyFunction {
  return function missedOccurrence(this: unknown, schedule: unknown): unknown {
    const occurrence = callOriginal(original, this, arguments);
    if (occurrence !== null && occurrence !== undefined) {
      const name = readString(schedule, 'name');
      if (name !== undefined) telemetry.scheduleMissed(name, scheduleName(name, readProperty(schedule, 'key')));
    }
    return occurrence;
  };
}

/**
 * The timekeeper of the pg-boss whose main exports these are, when pg-boss was loaded by
 * `require()` (Node's require of an ES module): a require hook never sees the files an ES module
 * imports, so it is required here from the same folder, which returns the very module pg-boss
 * imported (Node keeps one instance of an ES module per file). Through OpenTelemetry's loader hook
 * (`import`), the hook hands the file over itself and this finds nothing. Undefined whenever
 * anything is unexpected.
 */
export function requiredTimekeeper(main: unknown): TimekeeperExports | undefined {
  try {
    const require = createRequire(selfUrl);
    const PgBoss = readProperty(main, 'PgBoss');
    for (const [file, entry] of Object.entries(require.cache)) {
      if (!/[\\/]pg-boss[\\/]dist[\\/]index\.js$/.test(file) || readProperty(entry?.exports, 'PgBoss') !== PgBoss) continue;
      return createRequire(file)('./timekeeper.js') as TimekeeperExports;
    }
  } catch {
    // a layout this version of queue-otel does not know: no schedule metrics from pg-boss
  }
  return undefined;
}
