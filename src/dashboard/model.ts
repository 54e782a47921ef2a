import {
  ATTR_MESSAGING_DESTINATION_NAME,
  ATTR_MESSAGING_SYSTEM,
  ATTR_QUEUE_JOB_DEFERRAL,
  ATTR_QUEUE_JOB_NAME,
  ATTR_QUEUE_JOB_OUTCOME,
  ATTR_QUEUE_JOB_STATE,
  METRIC_MESSAGING_PROCESS_DURATION,
  METRIC_QUEUE_FAILED_OLDEST_AGE,
  METRIC_QUEUE_JOB_ACTIVE,
  METRIC_QUEUE_JOB_BUSY_TIME,
  METRIC_QUEUE_JOB_CPU_TIME,
  METRIC_QUEUE_JOB_MEMORY_USAGE,
  METRIC_QUEUE_JOB_RUNNING_OLDEST,
  METRIC_QUEUE_JOB_WAIT_DURATION,
  METRIC_QUEUE_JOB_COUNT,
  METRIC_QUEUE_OLDEST_AGE,
  METRIC_QUEUE_WORKER_CONCURRENCY,
  METRIC_QUEUE_WORKER_RATE_LIMIT_DURATION,
  ATTR_QUEUE_SCHEDULE_NAME,
  METRIC_QUEUE_SCHEDULE_LAG,
  METRIC_QUEUE_SCHEDULE_MISSED,
} from '../semconv.js';

/** A data point as the OpenTelemetry SDK's metric readers collect it (2.x and 3.x alike). */
export interface PointLike {
  attributes: Record<string, unknown>;
  value: number | HistogramLike;
}

export interface HistogramLike {
  buckets: { boundaries: number[]; counts: number[] };
  count: number;
  /** Sum of the recorded values (the SDK's histograms carry it). */
  sum?: number;
}

/** One collection: data points by metric name (cumulative temporality). */
export type Collection = ReadonlyMap<string, readonly PointLike[]>;

type Value = number | null;
type Lines = Record<string, Value[]>;

/** What the page draws for one queue: every array is aligned with {@link Snapshot.t}. */
export interface QueueView {
  name: string;
  system: string;
  /** Busy workers (busy-seconds per second) by job name. */
  busy: Lines;
  /** Concurrency limit of this process's workers. */
  concurrency: Value[];
  /** CPU by job name, in cores (CPU-seconds per second). */
  cpu: Lines;
  /** Memory held by running jobs by job name, bytes. */
  memory: Lines;
  /** Attempts ended per second by outcome (completed, retried, failed, deferred). */
  throughput: Lines;
  /**
   * The queue's rate limiter (`queue.worker.rate_limit.duration`), once it held a worker of this
   * process back: `waits`, waits per second; `held`, seconds held back per second, summed over the
   * workers (0.5: one worker held back half the time). A wait is recorded when it ends.
   */
  rateLimit: Lines;
  /**
   * Wait time quantiles over the last {@link WINDOW_S} seconds, seconds (null: no job started),
   * interpolated linearly within the histogram's buckets as Prometheus' histogram_quantile does:
   * the true quantile lies in the same bucket, not necessarily at that value.
   */
  wait: { p50: Value[]; p95: Value[] };
  /** Jobs in the queue by state. */
  depth: Lines;
  /** Oldest ready job's wait, oldest dead letter's age, longest-running job, seconds. */
  age: { waiting: Value[]; failed: Value[]; running: Value[] };
  /** Latest figures by job name, for the table. */
  jobs: JobRow[];
  /**
   * How old the state figures may be, seconds: they come from a read of the queue's store once
   * per read interval, not from this collection. `counts`: depth by state (for pg-boss, also up to
   * its monitor's interval, 60 s by default: the counts are the ones its monitor stores);
   * `oldest`: which job is the oldest waiting or dead letter (its age is taken at collection).
   */
  stateMaxAgeS: { counts: number; oldest: number };
  /**
   * Scheduled runs: by schedule name, the lag of its latest run, seconds, held until its next run
   * (a schedule runs seldom: its last lag is what matters until it runs again).
   */
  scheduleLag: Lines;
  /** Latest figures by schedule name, for the schedules table. */
  schedules: ScheduleRow[];
}

/** One schedule (job scheduler, repeatable job, cron entry) of a queue, as the table shows it. */
export interface ScheduleRow {
  name: string;
  /** Runs recorded since this process started. */
  runs: number;
  /** Lag of its latest run (the mean of the runs of the last interval that had any), seconds. */
  lastLag: Value;
  /** When its latest run was first seen, unix seconds (the collection's time). */
  lastRunAt: Value;
  /** Runs its scheduler says it missed (`queue.schedule.missed`), since this process started. */
  missed: number;
}

/** pg-boss's monitor interval by default (`monitorIntervalSeconds`): how old its stored counts may be. */
export const PG_BOSS_MONITOR_S = 60;

export interface JobRow {
  name: string;
  busy: Value;
  active: Value;
  cpu: Value;
  memory: Value;
  /** Attempts ended per second over the window, by outcome. */
  completed: Value;
  retried: Value;
  failed: Value;
  /** Attempts the processor put off on purpose, per second over the window. */
  deferred: Value;
  /** The same by reason (`queue.job.deferral`: delayed, waiting, waiting_children, rate_limited). */
  deferrals: Record<string, Value>;
  waitP50: Value;
  waitP95: Value;
  runningOldest: Value;
}

export interface Snapshot {
  /** Collection times, unix seconds. */
  t: number[];
  intervalS: number;
  windowS: number;
  /** Seconds between reads of a queue's state. */
  stateIntervalS: number;
  queues: QueueView[];
}

/** Quantiles and per-second rates of counters are taken over this many seconds. */
export const WINDOW_S = 30;

const OUTCOMES = ['completed', 'retried', 'failed', 'deferred'] as const;

interface Cumulative {
  busy: Map<string, number>;
  cpu: Map<string, number>;
  /** `${job}\0${outcome}` -> attempts ended. */
  consumed: Map<string, number>;
  /** `${job}\0${deferral}` -> attempts deferred. */
  deferred: Map<string, number>;
  /** Rate limiter waits and the seconds they lasted. */
  rateLimit: { count: number; sum: number } | undefined;
  /** Wait histogram merged by job name, and for the whole queue under ''. */
  wait: Map<string, { boundaries: number[]; counts: number[] }>;
}

interface QueueState {
  name: string;
  system: string;
  view: QueueView;
  /** Cumulative readings of past collections, oldest first, within the window (for rates). */
  history: Array<{ t: number; c: Cumulative }>;
  /** Whether readings were dropped from the history: until then it reaches back to the start. */
  trimmed: boolean;
  /** Each schedule's cumulative lag histogram at its latest run, and what the table shows of it. */
  schedules: Map<string, { count: number; sum: number; row: ScheduleRow }>;
}

/**
 * Turns the collections of an in-process metric reader into the time series the dashboard draws:
 * rates from cumulative counters (busy time, CPU, attempts), wait quantiles from histogram bucket
 * differences over a sliding window (interpolated within buckets), gauges as they are. Keeps at
 * most `capacity` collections.
 */
export class DashboardModel {
  private readonly times: number[] = [];
  private readonly queues = new Map<string, QueueState>();

  constructor(
    readonly intervalS: number,
    readonly capacity = 300,
    /** Seconds between reads of a queue's state (the instrumentations' `queueStateInterval`). */
    readonly stateIntervalS = 15,
  ) {}

  /** Adds one collection taken at `timeMs` (unix milliseconds). */
  add(timeMs: number, collection: Collection): void {
    const t = timeMs / 1000;
    this.times.push(t);
    const seen = new Set<string>();
    for (const [queue, data] of groupByQueue(collection)) {
      seen.add(queue);
      let state = this.queues.get(queue);
      if (state === undefined) {
        const view = emptyView(queue, data.system);
        view.stateMaxAgeS = {
          counts: this.stateIntervalS + (data.system === 'pg-boss' ? PG_BOSS_MONITOR_S : 0),
          oldest: this.stateIntervalS,
        };
        state = { name: queue, system: data.system, view, history: [], trimmed: false, schedules: new Map() };
        this.queues.set(queue, state);
      }
      this.update(state, t, data);
    }
    for (const [queue, state] of this.queues) if (!seen.has(queue)) this.update(state, t, emptyQueueData(state.system));
    for (const state of this.queues.values()) pad(state.view, this.times.length);
    if (this.times.length > this.capacity) {
      const drop = this.times.length - this.capacity;
      this.times.splice(0, drop);
      for (const state of this.queues.values()) trim(state.view, drop);
    }
  }

  snapshot(): Snapshot {
    return {
      t: [...this.times],
      intervalS: this.intervalS,
      windowS: WINDOW_S,
      stateIntervalS: this.stateIntervalS,
      queues: [...this.queues.values()].map((s) => s.view).sort((a, b) => a.name.localeCompare(b.name)),
    };
  }

  private update(state: QueueState, t: number, data: QueueData): void {
    const view = state.view;
    const index = this.times.length - 1;
    const cumulative: Cumulative = { busy: data.busy, cpu: data.cpu, consumed: data.consumed, deferred: data.deferred, wait: data.wait, rateLimit: data.rateLimit };
    const previous = state.history.at(-1);
    // The reading about WINDOW_S ago (or the oldest kept), for windowed rates and quantiles.
    const windowStart = state.history.find((h) => h.t >= t - WINDOW_S - 0.001) ?? previous;
    state.history.push({ t, c: cumulative });
    while (state.history.length > 0 && state.history[0]!.t < t - WINDOW_S - this.intervalS * 2) {
      state.history.shift();
      state.trimmed = true;
    }
    // Histograms count from zero at the start: while the history reaches back to it, quantiles
    // include what was recorded before the first collection too.
    const waitBase = !state.trimmed && windowStart === state.history[0] ? undefined : windowStart;

    const rate = (now: number | undefined, before: number | undefined, dt: number): Value =>
      now === undefined || before === undefined || dt <= 0 || now < before ? null : (now - before) / dt;

    set(view.concurrency, index, data.concurrency);
    const jobs = new Set<string>([...data.busy.keys(), ...data.memory.keys(), ...data.active.keys()]);
    for (const job of jobs) {
      line(view.busy, job)[index] = previous ? rate(data.busy.get(job), previous.c.busy.get(job) ?? 0, t - previous.t) : null;
      if (data.cpu.has(job)) line(view.cpu, job)[index] = previous ? rate(data.cpu.get(job), previous.c.cpu.get(job) ?? 0, t - previous.t) : null;
      if (data.memory.has(job)) line(view.memory, job)[index] = data.memory.get(job) ?? null;
    }
    for (const outcome of OUTCOMES) {
      const total = (c: Cumulative) => sumWhere(c.consumed, (k) => k.endsWith(`\0${outcome}`));
      // A line once the outcome was seen (deferred attempts are not in every queue).
      if (view.throughput[outcome] !== undefined || total(cumulative) > 0 || outcome !== 'deferred') {
        line(view.throughput, outcome)[index] = previous ? rate(total(cumulative), total(previous.c), t - previous.t) : null;
      }
    }
    if (data.rateLimit !== undefined || view.rateLimit.held !== undefined) {
      const before = previous?.c.rateLimit ?? { count: 0, sum: 0 };
      const now = data.rateLimit ?? before;
      line(view.rateLimit, 'waits')[index] = previous ? rate(now.count, before.count, t - previous.t) : null;
      line(view.rateLimit, 'held')[index] = previous ? rate(now.sum, before.sum, t - previous.t) : null;
    }
    const quantiles = (key: string) => {
      const now = data.wait.get(key);
      if (now === undefined) return { p50: null, p95: null };
      const before = waitBase?.c.wait.get(key);
      const counts = now.counts.map((c, i) => c - (before?.counts[i] ?? 0));
      return { p50: quantile(0.5, now.boundaries, counts), p95: quantile(0.95, now.boundaries, counts) };
    };
    const queueWait = quantiles('');
    view.wait.p50[index] = queueWait.p50;
    view.wait.p95[index] = queueWait.p95;
    for (const [stateName, count] of data.depth) line(view.depth, stateName)[index] = count;
    view.age.waiting[index] = data.oldest ?? null;
    view.age.failed[index] = data.failedOldest ?? null;
    view.age.running[index] = data.runningOldest.size > 0 ? Math.max(...data.runningOldest.values()) : null;

    const since = windowStart && windowStart.t < t ? windowStart : undefined;
    view.jobs = [...jobs].sort().map((job) => {
      const q = quantiles(job);
      const outcomeRate = (outcome: string): Value =>
        since ? rate(data.consumed.get(`${job}\0${outcome}`) ?? 0, since.c.consumed.get(`${job}\0${outcome}`) ?? 0, t - since.t) : null;
      const deferrals: Record<string, Value> = {};
      for (const key of data.deferred.keys()) {
        const [name, reason] = key.split('\0') as [string, string];
        if (name === job && since) deferrals[reason] = rate(data.deferred.get(key), since.c.deferred.get(key) ?? 0, t - since.t);
      }
      return {
        name: job,
        busy: view.busy[job]?.[index] ?? null,
        active: data.active.get(job) ?? null,
        cpu: view.cpu[job]?.[index] ?? null,
        memory: data.memory.get(job) ?? null,
        completed: outcomeRate('completed'),
        retried: outcomeRate('retried'),
        failed: outcomeRate('failed'),
        deferred: outcomeRate('deferred'),
        deferrals,
        waitP50: q.p50,
        waitP95: q.p95,
        runningOldest: data.runningOldest.get(job) ?? null,
      };
    });
    this.updateSchedules(state, t, index, data);
  }

  /** A schedule's runs since the last collection give its latest lag; it is held until the next. */
  private updateSchedules(state: QueueState, t: number, index: number, data: QueueData): void {
    for (const [name, lag] of data.scheduleLag) {
      let known = state.schedules.get(name);
      if (known === undefined) {
        known = { count: 0, sum: 0, row: { name, runs: 0, lastLag: null, lastRunAt: null, missed: 0 } };
        state.schedules.set(name, known);
      }
      // Runs since the previous reading (a lower count: the instruments were recreated).
      const runs = lag.count >= known.count ? lag.count - known.count : lag.count;
      const sum = lag.count >= known.count ? lag.sum - known.sum : lag.sum;
      if (runs > 0) {
        known.row.lastLag = Math.max(0, sum / runs);
        known.row.lastRunAt = t;
      }
      known.count = lag.count;
      known.sum = lag.sum;
      known.row.runs = lag.count;
    }
    for (const [name, known] of state.schedules) {
      known.row.missed = data.scheduleMissed.get(name) ?? known.row.missed;
      line(state.view.scheduleLag, name)[index] = known.row.lastLag;
    }
    state.view.schedules = [...state.schedules.values()].map((k) => ({ ...k.row })).sort((a, b) => a.name.localeCompare(b.name));
  }
}

/**
 * The `q` quantile of a histogram given its bucket upper bounds and per-bucket counts, by linear
 * interpolation within the bucket, as Prometheus' histogram_quantile does (the last, unbounded
 * bucket reports its lower bound). Null when the histogram is empty.
 */
export function quantile(q: number, boundaries: readonly number[], counts: readonly number[]): Value {
  const total = counts.reduce((a, b) => a + b, 0);
  if (total <= 0) return null;
  const rank = q * total;
  let seen = 0;
  for (let i = 0; i < counts.length; i++) {
    const c = counts[i] ?? 0;
    if (seen + c >= rank && c > 0) {
      const lower = i === 0 ? 0 : (boundaries[i - 1] ?? 0);
      const upper = boundaries[i];
      if (upper === undefined) return lower;
      return lower + ((upper - lower) * (rank - seen)) / c;
    }
    seen += c;
  }
  return boundaries.at(-1) ?? null;
}

interface QueueData {
  system: string;
  concurrency: number | null;
  busy: Map<string, number>;
  cpu: Map<string, number>;
  memory: Map<string, number>;
  active: Map<string, number>;
  runningOldest: Map<string, number>;
  consumed: Map<string, number>;
  deferred: Map<string, number>;
  rateLimit: { count: number; sum: number } | undefined;
  wait: Map<string, { boundaries: number[]; counts: number[] }>;
  depth: Map<string, number>;
  oldest: number | undefined;
  failedOldest: number | undefined;
  /** Cumulative lag histogram count and sum by schedule name. */
  scheduleLag: Map<string, { count: number; sum: number }>;
  /** Cumulative missed runs by schedule name. */
  scheduleMissed: Map<string, number>;
}

function emptyQueueData(system: string): QueueData {
  return {
    system,
    concurrency: null,
    busy: new Map(),
    cpu: new Map(),
    memory: new Map(),
    active: new Map(),
    runningOldest: new Map(),
    consumed: new Map(),
    deferred: new Map(),
    rateLimit: undefined,
    wait: new Map(),
    depth: new Map(),
    oldest: undefined,
    failedOldest: undefined,
    scheduleLag: new Map(),
    scheduleMissed: new Map(),
  };
}

/** Sorts one collection's points into per-queue readings, summing across other attributes. */
function groupByQueue(collection: Collection): Map<string, QueueData> {
  const queues = new Map<string, QueueData>();
  const of = (p: PointLike): QueueData | undefined => {
    const queue = p.attributes[ATTR_MESSAGING_DESTINATION_NAME];
    if (typeof queue !== 'string') return undefined;
    let data = queues.get(queue);
    if (data === undefined) queues.set(queue, (data = emptyQueueData(String(p.attributes[ATTR_MESSAGING_SYSTEM] ?? ''))));
    return data;
  };
  const job = (p: PointLike) => String(p.attributes[ATTR_QUEUE_JOB_NAME] ?? '');
  const each = (metric: string, fn: (data: QueueData, p: PointLike, value: number) => void) => {
    for (const p of collection.get(metric) ?? []) {
      const data = of(p);
      if (data !== undefined && typeof p.value === 'number') fn(data, p, p.value);
    }
  };
  const add = (map: Map<string, number>, key: string, v: number) => map.set(key, (map.get(key) ?? 0) + v);

  each(METRIC_QUEUE_JOB_BUSY_TIME, (d, p, v) => add(d.busy, job(p), v));
  each(METRIC_QUEUE_JOB_CPU_TIME, (d, p, v) => add(d.cpu, job(p), v));
  each(METRIC_QUEUE_JOB_MEMORY_USAGE, (d, p, v) => add(d.memory, job(p), v));
  each(METRIC_QUEUE_JOB_ACTIVE, (d, p, v) => add(d.active, job(p), v));
  each(METRIC_QUEUE_JOB_RUNNING_OLDEST, (d, p, v) => d.runningOldest.set(job(p), Math.max(v, d.runningOldest.get(job(p)) ?? 0)));
  each(METRIC_QUEUE_WORKER_CONCURRENCY, (d, _p, v) => (d.concurrency = (d.concurrency ?? 0) + v));
  each(METRIC_QUEUE_JOB_COUNT, (d, p, v) => add(d.depth, String(p.attributes[ATTR_QUEUE_JOB_STATE]), v));
  each(METRIC_QUEUE_OLDEST_AGE, (d, _p, v) => (d.oldest = Math.max(v, d.oldest ?? 0)));
  each(METRIC_QUEUE_FAILED_OLDEST_AGE, (d, _p, v) => (d.failedOldest = Math.max(v, d.failedOldest ?? 0)));
  // Ended attempts by outcome: the count of the process-duration histogram.
  for (const p of collection.get(METRIC_MESSAGING_PROCESS_DURATION) ?? []) {
    const data = of(p);
    if (data === undefined || typeof p.value === 'number') continue;
    const outcome = String(p.attributes[ATTR_QUEUE_JOB_OUTCOME]);
    add(data.consumed, `${job(p)}\0${outcome}`, p.value.count);
    if (outcome === 'deferred') add(data.deferred, `${job(p)}\0${String(p.attributes[ATTR_QUEUE_JOB_DEFERRAL] ?? '')}`, p.value.count);
  }
  for (const p of collection.get(METRIC_QUEUE_WORKER_RATE_LIMIT_DURATION) ?? []) {
    const data = of(p);
    if (data === undefined || typeof p.value === 'number') continue;
    const found = data.rateLimit ?? { count: 0, sum: 0 };
    data.rateLimit = { count: found.count + p.value.count, sum: found.sum + (p.value.sum ?? 0) };
  }
  for (const p of collection.get(METRIC_QUEUE_JOB_WAIT_DURATION) ?? []) {
    const data = of(p);
    if (data === undefined || typeof p.value === 'number') continue;
    for (const key of [job(p), '']) {
      const h = data.wait.get(key);
      const { boundaries, counts } = p.value.buckets;
      if (h === undefined) data.wait.set(key, { boundaries: [...boundaries], counts: [...counts] });
      else counts.forEach((c, i) => (h.counts[i] = (h.counts[i] ?? 0) + c));
    }
  }
  const schedule = (p: PointLike) => String(p.attributes[ATTR_QUEUE_SCHEDULE_NAME] ?? '');
  for (const p of collection.get(METRIC_QUEUE_SCHEDULE_LAG) ?? []) {
    const data = of(p);
    if (data === undefined || typeof p.value === 'number') continue;
    const found = data.scheduleLag.get(schedule(p)) ?? { count: 0, sum: 0 };
    data.scheduleLag.set(schedule(p), { count: found.count + p.value.count, sum: found.sum + (p.value.sum ?? 0) });
  }
  each(METRIC_QUEUE_SCHEDULE_MISSED, (d, p, v) => add(d.scheduleMissed, schedule(p), v));
  return queues;
}

function emptyView(name: string, system: string): QueueView {
  return {
    name,
    system,
    busy: {},
    concurrency: [],
    cpu: {},
    memory: {},
    throughput: {},
    rateLimit: {},
    wait: { p50: [], p95: [] },
    depth: {},
    age: { waiting: [], failed: [], running: [] },
    jobs: [],
    stateMaxAgeS: { counts: 0, oldest: 0 },
    scheduleLag: {},
    schedules: [],
  };
}

function line(lines: Lines, key: string): Value[] {
  return (lines[key] ??= []);
}

function set(values: Value[], index: number, value: Value): void {
  values[index] = value;
}

function sumWhere(map: Map<string, number>, keep: (key: string) => boolean): number {
  let total = 0;
  for (const [k, v] of map) if (keep(k)) total += v;
  return total;
}

/** Every array of the view, so padding and trimming reach them all. */
function arrays(view: QueueView): Value[][] {
  return [
    view.concurrency,
    view.wait.p50,
    view.wait.p95,
    view.age.waiting,
    view.age.failed,
    view.age.running,
    ...[view.busy, view.cpu, view.memory, view.throughput, view.rateLimit, view.depth, view.scheduleLag].flatMap((l) => Object.values(l)),
  ];
}

/** Fills holes (a series that did not exist yet, or was not reported) with null up to `length`. */
function pad(view: QueueView, length: number): void {
  for (const values of arrays(view)) {
    for (let i = 0; i < length; i++) if (values[i] === undefined) values[i] = null;
  }
}

function trim(view: QueueView, drop: number): void {
  for (const values of arrays(view)) values.splice(0, drop);
}
