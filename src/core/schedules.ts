import type { CoreContext } from './context.js';
import type { ScheduleFacts } from './seam.js';

/** A schedule run as the core records it: its schedule's name and how late it started. */
export interface ScheduleLag {
  name: string;
  /** Seconds from the time the run was due until `now`; never negative. */
  lagS: number;
}

/**
 * Reads schedule facts as an adapter handed them (anything: a job can carry anything), or
 * undefined when they do not name a schedule and a time.
 */
export function scheduleLag(facts: ScheduleFacts | undefined, now: number): ScheduleLag | undefined {
  if (facts === null || typeof facts !== 'object') return undefined;
  const { name, scheduledAt } = facts;
  if (typeof name !== 'string' || name === '' || typeof scheduledAt !== 'number' || !Number.isFinite(scheduledAt)) return undefined;
  // Scheduler and worker clocks differ: a run that starts "before" it was due is skew, not time.
  return { name, lagS: Math.max(0, now - scheduledAt) / 1000 };
}

/**
 * Records the runs of schedules (`queue.schedule.lag`) and the runs their scheduler says it missed
 * (`queue.schedule.missed`), by queue and schedule name within the queue's budget (tracker.ts).
 */
export class ScheduleRecorder {
  constructor(private readonly core: CoreContext) {}

  /** A run started now (or was acted on now, see `JobTelemetry.scheduleRun`); returns its lag. */
  ran(queue: string, facts: ScheduleFacts | undefined, now = Date.now()): ScheduleLag | undefined {
    const lag = scheduleLag(facts, now);
    if (lag === undefined) return undefined;
    this.core.metrics?.scheduleLag.record(lag.lagS, this.core.tracker.queue(queue).scheduleAttributes(lag.name));
    return lag;
  }

  missed(queue: string, name: string): void {
    if (typeof name !== 'string' || name === '') return;
    this.core.metrics?.scheduleMissed.add(1, this.core.tracker.queue(queue).scheduleAttributes(name));
  }
}
