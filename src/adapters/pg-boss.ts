/**
 * The pg-boss 12 adapter: which methods to wrap and how to read a job's facts. It hands plain facts
 * to the core and knows nothing of OpenTelemetry.
 *
 * What pg-boss does (dist/index.js, dist/manager.js, dist/telemetry.js), and why each wrap sits
 * where it does. Everything behind `PgBoss` is private (`#manager`), so only its public methods are
 * wrapped:
 * - `work(name, options?, handler)`: pg-boss fetches a batch (one job by default), and runs the
 *   handler inside its own `process` span when its telemetry is on. The handler is wrapped: each job
 *   of the batch is an attempt, and the handler runs in the first one's context. `includeMetadata`
 *   is asked of the fetch (same query, more columns: no extra round trip) so the job's retry limit
 *   and ready time (`startAfter`, set for retries too) are known; the columns the application did
 *   not ask for are removed again before its handler sees the jobs.
 * - The outcome is pg-boss's own rule: a throw fails every job of the batch, and a failed job is
 *   retried while `retryCount < retryLimit` (the `fail` SQL), else it goes to the failed state
 *   (and to its dead-letter queue). `retryCount` is 0 on the first attempt.
 * - pg-boss's telemetry (`openTelemetry` option, on unless `enabled: false`) makes `send` and
 *   `process` spans and the `messaging.*` metrics itself. Whether it is on is read from the config
 *   of the database pg-boss builds (`getDb()`, called by its constructor); with a database adapter
 *   of the application's own it is taken to be on, pg-boss's default.
 * - Jobs have no name: pg-boss's `name` is the queue.
 */
import type { Attempt, AttemptEnd, AttemptFacts } from '../core/attempts.js';
import type { QueueTelemetry } from '../core/telemetry.js';
import { QueueHolders } from './holders.js';
import type { AnyFunction, MethodPatch } from './patch.js';
import { type PgBossDb, type PgBossPlace, pgBossStateSource } from './pg-boss-state.js';

interface PgBossJob {
  id?: string;
  name?: string;
  data?: unknown;
  retryCount?: number;
  retryLimit?: number;
  startAfter?: Date | string;
  [key: string]: unknown;
}
interface WorkOptions {
  includeMetadata?: boolean;
  batchSize?: number;
  localConcurrency?: number;
  perJobResults?: boolean;
  [key: string]: unknown;
}
interface PgBoss {
  getDb(): PgBossDb;
}

/** The exports of `pg-boss` this adapter patches. */
export interface PgBossExports {
  PgBoss?: { prototype: object };
}

/** The columns of a job without `includeMetadata` (pg-boss's JOB_COLUMNS_MIN), and the signal it adds. */
const MINIMAL_JOB_KEYS = new Set(['id', 'name', 'data', 'retryCount', 'expireInSeconds', 'heartbeatSeconds', 'groupId', 'groupTier', 'signal']);

/** What this adapter learned of each PgBoss instance. */
interface BossInfo {
  /** pg-boss's own telemetry is on: it makes the spans and messaging metrics. */
  native: boolean;
  schema: string;
  stopped: boolean;
  /** Unregister functions of its workers' concurrency, per queue and worker id. */
  workers: Map<string, Map<string, () => void>>;
}
const bosses = new WeakMap<object, BossInfo>();

function infoOf(boss: object): BossInfo {
  let info = bosses.get(boss);
  if (info === undefined) bosses.set(boss, (info = { native: true, schema: 'pgboss', stopped: false, workers: new Map() }));
  return info;
}

export function pgBossPatches(exports: PgBossExports, telemetry: QueueTelemetry): MethodPatch[] {
  const boss = exports.PgBoss?.prototype;
  if (!boss) return [];
  return [
    { target: boss, method: 'getDb', wrap: wrapGetDb },
    { target: boss, method: 'work', wrap: (o) => wrapWork(o, telemetry) },
    { target: boss, method: 'offWork', wrap: wrapOffWork },
    { target: boss, method: 'stop', wrap: wrapStop },
    { target: boss, method: 'start', wrap: wrapStart },
    { target: boss, method: 'send', wrap: (o) => wrapSend(o, telemetry) },
    { target: boss, method: 'sendAfter', wrap: (o) => wrapSend(o, telemetry) },
    { target: boss, method: 'insert', wrap: (o) => wrapInsert(o, telemetry) },
  ];
}

/** The constructor's first getDb() returns the database pg-boss built from its config. */
function wrapGetDb(original: AnyFunction): AnyFunction {
  return function getDb(this: object): unknown {
    const db = (original as (...a: unknown[]) => unknown).apply(this, arguments as never) as PgBossDb | undefined;
    if (!bosses.has(this)) {
      const info = infoOf(this);
      const config = db?.config;
      if (config !== undefined) {
        info.native = config.openTelemetry?.enabled !== false;
        if (typeof config.schema === 'string') info.schema = config.schema;
      }
    }
    return db;
  };
}

function wrapStart(original: AnyFunction): AnyFunction {
  return function start(this: object): unknown {
    infoOf(this).stopped = false;
    return (original as (...a: unknown[]) => unknown).apply(this, arguments as never);
  };
}

function wrapStop(original: AnyFunction): AnyFunction {
  return function stop(this: object): unknown {
    const info = infoOf(this);
    info.stopped = true;
    for (const queue of info.workers.values()) for (const unregister of queue.values()) unregister();
    info.workers.clear();
    return (original as (...a: unknown[]) => unknown).apply(this, arguments as never);
  };
}

function wrapOffWork(original: AnyFunction): AnyFunction {
  return function offWork(this: object, name: unknown, options?: { id?: string }): unknown {
    const queue = infoOf(this).workers.get(String(name));
    if (queue !== undefined) {
      for (const [id, unregister] of queue) {
        if (options?.id === undefined || options.id === id) {
          unregister();
          queue.delete(id);
        }
      }
    }
    return (original as (...a: unknown[]) => unknown).apply(this, arguments as never);
  };
}

// ---- consumer ---------------------------------------------------------------------------------

function wrapWork(original: AnyFunction, telemetry: QueueTelemetry): AnyFunction {
  return function work(this: PgBoss, name: unknown, ...args: unknown[]): unknown {
    const call = original as (...a: unknown[]) => Promise<unknown>;
    const handlerFirst = typeof args[0] === 'function';
    const handler = handlerFirst ? args[0] : args[1];
    const options = (handlerFirst ? undefined : args[0]) as WorkOptions | undefined;
    if (typeof name !== 'string' || typeof handler !== 'function' || (options != null && typeof options !== 'object')) {
      return call.apply(this, [name, ...args]);
    }
    const info = infoOf(this);
    watch(this, name, telemetry);
    const wantsMetadata = options?.includeMetadata === true;
    const wrapped = wrapHandler(handler as AnyFunction, name, info, wantsMetadata, options?.perJobResults === true, telemetry);
    const promise = call.call(this, name, { ...options, includeMetadata: true }, wrapped, ...args.slice(2));
    const concurrency = positive(options?.localConcurrency) * positive(options?.batchSize);
    return promise.then((id) => {
      let queue = info.workers.get(name);
      if (queue === undefined) info.workers.set(name, (queue = new Map()));
      queue.set(String(id), telemetry.addWorker(name, () => concurrency));
      return id;
    });
  };
}

function positive(value: unknown): number {
  return typeof value === 'number' && Number.isInteger(value) && value > 0 ? value : 1;
}

function wrapHandler(
  handler: AnyFunction,
  queue: string,
  info: BossInfo,
  wantsMetadata: boolean,
  perJobResults: boolean,
  telemetry: QueueTelemetry,
): AnyFunction {
  return function handle(this: unknown, jobs: unknown): unknown {
    const run = () => (handler as (...a: unknown[]) => unknown).apply(this, arguments as never);
    if (!Array.isArray(jobs) || jobs.length === 0) return run();
    const batch = jobs as PgBossJob[];
    const started: Array<{ attempt: Attempt; job: PgBossJob; retryCount: number; retryLimit: number | undefined }> = [];
    for (const job of batch) {
      if (job === null || typeof job !== 'object') continue;
      const retryCount = typeof job.retryCount === 'number' ? job.retryCount : 0;
      const retryLimit = typeof job.retryLimit === 'number' ? job.retryLimit : undefined;
      const facts: AttemptFacts = {
        queue,
        jobName: undefined,
        jobId: typeof job.id === 'string' ? job.id : undefined,
        attempt: retryCount + 1,
        readyAt: timeOf(job.startAfter),
        carrier: undefined, // pg-boss extracts its own context (propagateContext) into its span
        traced: !info.native,
        annotateActiveSpan: info.native && batch.length === 1,
        nativeMessagingMetrics: info.native,
        job,
      };
      if (!wantsMetadata) stripMetadata(job);
      const attempt = telemetry.attempts.start(facts);
      if (attempt !== undefined) started.push({ attempt, job, retryCount, retryLimit });
    }
    const first = started[0]?.attempt;
    const endAll = (error: unknown, value: unknown) => {
      for (const s of started) telemetry.attempts.end(s.attempt, outcomeOf(s, error, value, perJobResults));
    };
    let result: unknown;
    try {
      result = first === undefined ? run() : telemetry.attempts.runProcessor(first, run, false);
    } catch (error) {
      endAll(error ?? new Error('undefined error'), undefined);
      throw error;
    }
    return Promise.resolve(result).then(
      (value) => {
        endAll(undefined, value);
        return value;
      },
      (error: unknown) => {
        endAll(error ?? new Error('undefined error'), undefined);
        throw error;
      },
    );
  };
}

/** pg-boss's own rule (see the file comment). */
function outcomeOf(
  s: { job: PgBossJob; retryCount: number; retryLimit: number | undefined },
  error: unknown,
  value: unknown,
  perJobResults: boolean,
): AttemptEnd {
  const attempts = s.retryCount + 1;
  const failed = (cause: unknown, final: boolean): AttemptEnd =>
    final || (s.retryLimit !== undefined && s.retryCount >= s.retryLimit)
      ? { outcome: 'failed', error: cause, attemptsMade: attempts }
      : { outcome: 'retried', error: cause };
  if (error !== undefined) return failed(error, false);
  if (!perJobResults) return { outcome: 'completed', attemptsMade: attempts };
  if (!Array.isArray(value)) return failed(new Error('perJobResults handler must resolve with an array of job results'), false);
  const item = (value as Array<{ id?: unknown; status?: unknown; output?: unknown } | null>).find((i) => i?.id === s.job.id);
  if (item?.status === 'completed') return { outcome: 'completed', attemptsMade: attempts };
  if (item?.status === 'deadletter') return failed(item.output, true);
  return failed(item?.output ?? new Error('no disposition returned by handler'), false);
}

function timeOf(value: unknown): number | undefined {
  if (value instanceof Date) return value.getTime();
  if (typeof value === 'string' || typeof value === 'number') {
    const t = new Date(value).getTime();
    return Number.isFinite(t) ? t : undefined;
  }
  return undefined;
}

/** The job as the application's handler would have seen it without `includeMetadata`. */
function stripMetadata(job: PgBossJob): void {
  for (const key of Object.keys(job)) if (!MINIMAL_JOB_KEYS.has(key)) delete job[key];
}

// ---- queue state ------------------------------------------------------------------------------

/** The PgBoss instances of this process per queue, whose database state reads use. */
const holders = new QueueHolders<PgBoss>((boss) => !infoOf(boss).stopped);

const placeOf = (boss: PgBoss): PgBossPlace => ({ db: boss.getDb(), schema: infoOf(boss).schema });

function watch(boss: PgBoss, queue: string, telemetry: QueueTelemetry): void {
  if (!telemetry.config.queueState) return;
  holders.add(queue, boss);
  const own = (name: string) => {
    const holder = holders.open(name);
    return holder === undefined ? [] : [placeOf(holder)];
  };
  const listed = telemetry.config.queues;
  if (!listed.some((e) => e.name === queue)) telemetry.watchQueue(queue, () => pgBossStateSource(queue, () => own(queue), false));
  for (const { name, prefix } of listed) {
    // Listed: its own instance while this process uses the queue; else the instances open here,
    // in its schema when given, each looked in when not.
    const places = () => {
      const mine = own(name);
      if (mine.length > 0) return mine;
      const all: PgBossPlace[] = [];
      for (const place of holders.allOpen().map(placeOf)) {
        if (!all.some((p) => p.db === place.db && p.schema === place.schema)) all.push(place);
      }
      return prefix === undefined ? all : all.filter((p) => p.schema === prefix).slice(0, 1);
    };
    telemetry.watchQueue(name, () => pgBossStateSource(name, places, prefix === undefined));
  }
}

// ---- producer ---------------------------------------------------------------------------------

/**
 * `send(name, data, options)` or `send({ name, data, options })`. With pg-boss's telemetry on, its
 * own `send` span and metrics stay and queue-otel only starts watching the queue's state. With it
 * off, queue-otel makes the `send` span and metrics; pg-boss then stores no trace context with the
 * job (only its telemetry writes the `trace_context` column), so the process span has no link.
 */
function wrapSend(original: AnyFunction, telemetry: QueueTelemetry): AnyFunction {
  return function send(this: PgBoss, first: unknown): unknown {
    const call = () => (original as (...a: unknown[]) => Promise<unknown>).apply(this, arguments as never);
    const name = typeof first === 'string' ? first : (first as { name?: unknown } | null)?.name;
    if (typeof name !== 'string') return call();
    const info = infoOf(this);
    watch(this, name, telemetry);
    if (info.native) return call();
    const data = typeof first === 'string' ? arguments[1] : (first as { data?: unknown }).data;
    const opts = typeof first === 'string' ? arguments[2] : (first as { options?: unknown }).options;
    return telemetry.sends.run(
      { queue: name, jobs: [{ queue: name, jobName: undefined }], traced: true, hookInfo: () => ({ queue: name, jobs: [{ name, data, opts }] }) },
      () => call(),
    );
  };
}

function wrapInsert(original: AnyFunction, telemetry: QueueTelemetry): AnyFunction {
  return function insert(this: PgBoss, name: unknown, jobs: unknown): unknown {
    const call = () => (original as (...a: unknown[]) => Promise<unknown>).apply(this, arguments as never);
    if (typeof name !== 'string' || !Array.isArray(jobs)) return call();
    const info = infoOf(this);
    watch(this, name, telemetry);
    if (info.native) return call();
    return telemetry.sends.run(
      {
        queue: name,
        jobs: jobs.map(() => ({ queue: name, jobName: undefined })),
        traced: true,
        hookInfo: () => ({ queue: name, jobs: jobs.map((j: { data?: unknown }) => ({ name, data: j?.data })) }),
      },
      () => call(),
    );
  };
}
