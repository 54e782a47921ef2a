/**
 * The pg-boss 12 adapter: which methods to wrap and how to read a job's facts. It reports to the
 * core through the seam (core/seam.ts) and knows nothing of OpenTelemetry.
 *
 * What pg-boss does (dist/index.js, dist/manager.js, dist/telemetry.js), and why each wrap sits
 * where it does. Everything behind `PgBoss` is private (`#manager`), so only its public methods are
 * wrapped:
 * - `work(name, options?, handler)`: pg-boss fetches a batch (one job by default) and runs the
 *   handler (inside its own `process` span when its telemetry is on). The handler is wrapped: each
 *   job of the batch is an attempt, and the handler runs in the first one's context. The arguments
 *   are read the way pg-boss reads them (`checkWorkArgs`); a call pg-boss would reject is passed
 *   through untouched, for pg-boss to reject.
 * - A job's retry limit and ready time (`startAfter`, set for retries too) come with the job only
 *   when `includeMetadata` is asked (same query, more columns: no extra round trip). When the
 *   application leaves that option out, it is asked, and the columns it adds are removed again
 *   before the application's handler sees the jobs (which columns: see METADATA_ONLY). An
 *   application that sets the option, to anything, gets exactly its own option.
 * - The outcome is pg-boss's own rule: a throw fails every job of the batch, and a failed job is
 *   retried while `retryCount < retryLimit` (the `fail` SQL), else it goes to the failed state
 *   (and to its dead-letter queue). `retryCount` is 0 on the first attempt.
 * - pg-boss 12.38 brought telemetry of its own (`openTelemetry` option, on unless
 *   `enabled: false`): `send` and `process` spans and the `messaging.*` metrics. Whether the
 *   loaded pg-boss has it is asked of pg-boss itself (see hasOwnTelemetry); whether an instance
 *   uses it is read from its config.
 * - Jobs have no name: pg-boss's `name` is the queue.
 */
import type { AttemptEnd, AttemptFacts, AttemptHandle, JobTelemetry } from '../core/seam.js';
import { readNumber, readProperty } from '../safe.js';
import { QueueHolders } from './holders.js';
import { type AnyFunction, type MethodPatch, callOriginal, whenSettled } from './patch.js';
import { type PgBossDb, type PgBossPlace, pgBossStateSource } from './pg-boss-state.js';

interface PgBoss {
  getDb(): PgBossDb;
}

/** The exports of `pg-boss` this adapter patches. */
export interface PgBossExports {
  PgBoss?: { prototype: object; new (config: object): object };
}

/**
 * The columns `includeMetadata` adds to a job (pg-boss's JOB_COLUMNS_ALL less JOB_COLUMNS_MIN),
 * removed from jobs whose handler did not ask for them. `retryCount` is among them until 12.35,
 * where pg-boss made it a minimal column (its workers settle against it).
 */
const METADATA_ONLY = [
  'policy', 'state', 'priority', 'retryLimit', 'retryDelay', 'retryBackoff', 'retryDelayMax', 'startAfter', 'startedOn',
  'singletonKey', 'singletonOn', 'deleteAfterSeconds', 'heartbeatOn', 'createdOn', 'completedOn', 'keepUntil',
  'deadLetter', 'blocked', 'blocking', 'pendingDependencies', 'output', 'sourceName', 'sourceId', 'sourceCreatedOn',
  'sourceRetryCount', 'sourceOutput', 'sourceRootId',
];
const RETRY_COUNT_MINIMAL_SINCE = [12, 35];
/**
 * The queue columns the state reader (pg-boss-state.ts) reads exist from 12.38: `blocked_count`
 * (`ready_count` and `failed_count` from 12.21; 12.0 keeps `queued_count` and `total_count`).
 * Before, its query would fail at every interval (in the database's log too): no state is read.
 */
const QUEUE_STATE_SINCE = [12, 38];

/** What this adapter learned of each PgBoss instance. */
interface BossInfo {
  /** pg-boss's own telemetry is on: it makes the spans and messaging metrics. */
  native: boolean;
  schema: string;
  stopped: boolean;
  /** Unregister functions of its workers' concurrency, per queue and worker id. */
  workers: Map<string, Map<string, () => void>>;
}

/** What one loaded copy of pg-boss can do. */
interface Module {
  ownTelemetry: boolean;
  metadataOnly: ReadonlySet<string>;
  queueState: boolean;
}

export function pgBossPatches(exports: PgBossExports, telemetry: JobTelemetry, version?: string): MethodPatch[] {
  const boss = exports.PgBoss?.prototype;
  if (!boss) return [];
  const module: Module = {
    ownTelemetry: hasOwnTelemetry(exports),
    metadataOnly: new Set(atLeast(version, RETRY_COUNT_MINIMAL_SINCE) ? METADATA_ONLY : [...METADATA_ONLY, 'retryCount']),
    queueState: atLeast(version, QUEUE_STATE_SINCE),
  };
  const bosses = new WeakMap<object, BossInfo>();
  const infoOf = (b: object): BossInfo => {
    let info = bosses.get(b);
    if (info === undefined) bosses.set(b, (info = { native: module.ownTelemetry, schema: 'pgboss', stopped: false, workers: new Map() }));
    return info;
  };
  const holders = new QueueHolders<PgBoss>((b) => !infoOf(b).stopped);
  const ctx: Context = { telemetry, module, infoOf, holders };
  return [
    { target: boss, method: 'getDb', wrap: (o) => wrapGetDb(o, ctx) },
    { target: boss, method: 'work', wrap: (o) => wrapWork(o, ctx) },
    { target: boss, method: 'offWork', wrap: (o) => wrapOffWork(o, ctx) },
    { target: boss, method: 'stop', wrap: (o) => wrapStop(o, ctx) },
    { target: boss, method: 'start', wrap: (o) => wrapStart(o, ctx) },
    { target: boss, method: 'send', wrap: (o) => wrapSend(o, ctx) },
    { target: boss, method: 'sendAfter', wrap: (o) => wrapSend(o, ctx) },
    { target: boss, method: 'insert', wrap: (o) => wrapInsert(o, ctx) },
  ];
}

interface Context {
  telemetry: JobTelemetry;
  module: Module;
  infoOf(boss: object): BossInfo;
  holders: QueueHolders<PgBoss>;
}

/**
 * Whether this pg-boss has telemetry of its own: it then validates an `openTelemetry` option, and
 * a constructor given a wrong one says so. The probe builds no connection (pg-boss connects in
 * start()); anything unexpected reads as "no".
 */
function hasOwnTelemetry(exports: PgBossExports): boolean {
  const PgBoss = exports.PgBoss;
  if (typeof PgBoss !== 'function') return false;
  try {
    new PgBoss({ connectionString: 'postgres://127.0.0.1/queue-otel-probe', openTelemetry: 'probe' });
    return false;
  } catch (error) {
    return /openTelemetry/.test(String(readProperty(error, 'message')));
  }
}

function atLeast(version: string | undefined, [major, minor]: number[]): boolean {
  const [m, n] = (version ?? '').split('.').map(Number);
  if (m === undefined || n === undefined || !Number.isFinite(m) || !Number.isFinite(n)) return true;
  return m > (major as number) || (m === major && n >= (minor as number));
}

/** The constructor's first getDb() returns the database pg-boss built from its config. */
function wrapGetDb(original: AnyFunction, { module, infoOf }: Context): AnyFunction {
  const seen = new WeakSet<object>();
  return function getDb(this: object): unknown {
    const db = callOriginal(original, this, arguments);
    if (!seen.has(this)) {
      seen.add(this);
      const info = infoOf(this);
      const config = readProperty(db, 'config');
      const schema = readProperty(config, 'schema');
      if (typeof schema === 'string') info.schema = schema;
      info.native = module.ownTelemetry && readProperty(readProperty(config, 'openTelemetry'), 'enabled') !== false;
    }
    return db;
  };
}

function wrapStart(original: AnyFunction, { infoOf }: Context): AnyFunction {
  return function start(this: object): unknown {
    infoOf(this).stopped = false;
    return callOriginal(original, this, arguments);
  };
}

function wrapStop(original: AnyFunction, { infoOf }: Context): AnyFunction {
  return function stop(this: object): unknown {
    const info = infoOf(this);
    info.stopped = true;
    for (const queue of info.workers.values()) for (const unregister of queue.values()) unregister();
    info.workers.clear();
    return callOriginal(original, this, arguments);
  };
}

/** `offWork(name, { id? })`; before 12.2, `offWork(name)` or `offWork({ id })`. */
function wrapOffWork(original: AnyFunction, { infoOf }: Context): AnyFunction {
  return function offWork(this: object, name: unknown, options?: unknown): unknown {
    const workers = infoOf(this).workers;
    const byId = name !== null && typeof name === 'object';
    const id = readProperty(byId ? name : options, 'id');
    const queues = byId ? (id === undefined ? [] : [...workers.values()]) : [workers.get(String(name))];
    for (const queue of queues) {
      if (queue === undefined) continue;
      for (const [worker, unregister] of queue) {
        if (id === undefined || id === worker) {
          unregister();
          queue.delete(worker);
        }
      }
    }
    return callOriginal(original, this, arguments);
  };
}

// ---- consumer ---------------------------------------------------------------------------------

/** `work(name, handler)` or `work(name, options, handler)`, read as pg-boss's checkWorkArgs does. */
function workArgs(args: unknown[]): { options: Record<string, unknown> | undefined; handler: AnyFunction } | undefined {
  const handler = args.length === 1 ? args[0] : args.length > 1 ? args[1] : undefined;
  const options = args.length > 1 ? args[0] || undefined : undefined;
  if (typeof handler !== 'function') return undefined;
  if (options !== undefined && (typeof options !== 'object' || Array.isArray(options))) return undefined;
  return { options: options as Record<string, unknown> | undefined, handler: handler as AnyFunction };
}

function wrapWork(original: AnyFunction, ctx: Context): AnyFunction {
  const { telemetry, infoOf } = ctx;
  return function work(this: PgBoss, name: unknown, ...args: unknown[]): unknown {
    const parsed = typeof name === 'string' ? workArgs(args) : undefined;
    if (parsed === undefined) return callOriginal(original, this, [name, ...args]);
    const { options, handler } = parsed;
    const info = infoOf(this);
    watch(this, name as string, ctx);
    let asked: boolean;
    let given: Record<string, unknown>;
    try {
      // The application's own value, whatever it is, goes to pg-boss as it is (pg-boss checks it).
      asked = options !== undefined && 'includeMetadata' in options;
      given = asked ? (options as Record<string, unknown>) : { ...options, includeMetadata: true };
    } catch {
      return callOriginal(original, this, [name, ...args]); // options whose getters throw
    }
    const strip = asked ? undefined : ctx.module.metadataOnly;
    const perJobResults = readProperty(options, 'perJobResults') === true;
    const wrapped = wrapHandler(handler, name as string, info, strip, perJobResults, telemetry);
    const promise = callOriginal(original, this, [name, given, wrapped, ...args.slice(2)]);
    const concurrency = positive(readProperty(options, 'localConcurrency')) * positive(readProperty(options, 'batchSize'));
    if (!(promise instanceof Promise)) return promise;
    return promise.then((id: unknown) => {
      let queue = info.workers.get(name as string);
      if (queue === undefined) info.workers.set(name as string, (queue = new Map()));
      queue.set(String(id), telemetry.workerStarted(name as string, () => concurrency));
      return id;
    });
  };
}

function positive(value: unknown): number {
  return typeof value === 'number' && Number.isInteger(value) && value > 0 ? value : 1;
}

interface Started {
  attempt: AttemptHandle;
  job: object;
  retryCount: number;
  retryLimit: number | undefined;
}

function wrapHandler(
  handler: AnyFunction,
  queue: string,
  info: BossInfo,
  strip: ReadonlySet<string> | undefined,
  perJobResults: boolean,
  telemetry: JobTelemetry,
): AnyFunction {
  return function handle(this: unknown, jobs: unknown): unknown {
    const args = arguments;
    const run = () => callOriginal(handler, this, args);
    if (!Array.isArray(jobs) || jobs.length === 0) return run();
    const started: Started[] = [];
    for (const job of jobs) {
      if (job === null || typeof job !== 'object') continue;
      const retryCount = readNumber(job, 'retryCount') ?? 0;
      const retryLimit = readNumber(job, 'retryLimit');
      const attempt = telemetry.startAttempt(() => attemptFacts(queue, job, info, jobs.length === 1));
      if (strip !== undefined) stripMetadata(job, strip);
      if (attempt !== undefined) started.push({ attempt, job, retryCount, retryLimit });
    }
    const first = started[0]?.attempt;
    return whenSettled(
      () => (first === undefined ? run() : telemetry.runAttempt(first, run, false)),
      (threw, errorOrValue) => {
        for (const s of started) telemetry.endAttempt(s.attempt, outcomeOf(s, threw, errorOrValue, perJobResults));
      },
    );
  };
}

function attemptFacts(queue: string, job: object, info: BossInfo, single: boolean): AttemptFacts {
  const id = readProperty(job, 'id');
  return {
    queue,
    jobName: undefined,
    jobId: typeof id === 'string' ? id : undefined,
    attempt: (readNumber(job, 'retryCount') ?? 0) + 1,
    readyAt: timeOf(readProperty(job, 'startAfter')),
    carrier: undefined, // pg-boss extracts its own context (propagateContext) into its span
    traced: !info.native,
    annotateActiveSpan: info.native && single,
    nativeMessagingMetrics: info.native,
    job,
  };
}

/** pg-boss's own rule (see the file comment). */
function outcomeOf(s: Started, threw: boolean, errorOrValue: unknown, perJobResults: boolean): AttemptEnd {
  const attempts = s.retryCount + 1;
  const failed = (cause: unknown, final: boolean): AttemptEnd =>
    final || (s.retryLimit !== undefined && s.retryCount >= s.retryLimit)
      ? { outcome: 'failed', error: cause, threw: true, attemptsMade: attempts }
      : { outcome: 'retried', error: cause, threw: true };
  if (threw) return failed(errorOrValue, false);
  if (!perJobResults) return { outcome: 'completed', attemptsMade: attempts };
  if (!Array.isArray(errorOrValue)) return failed(new Error('perJobResults handler must resolve with an array of job results'), false);
  const id = readProperty(s.job, 'id');
  const item = errorOrValue.find((i: unknown) => readProperty(i, 'id') === id);
  const status = readProperty(item, 'status');
  if (status === 'completed') return { outcome: 'completed', attemptsMade: attempts };
  if (status === 'deadletter') return failed(readProperty(item, 'output'), true);
  return failed(readProperty(item, 'output') ?? new Error('no disposition returned by handler'), false);
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
function stripMetadata(job: object, keys: ReadonlySet<string>): void {
  try {
    for (const key of Object.keys(job)) if (keys.has(key)) delete (job as Record<string, unknown>)[key];
  } catch {
    // a frozen or exotic job object: leave it as it is
  }
}

// ---- queue state ------------------------------------------------------------------------------

function watch(boss: PgBoss, queue: string, { telemetry, module, infoOf, holders }: Context): void {
  if (!telemetry.queueState || !module.queueState) return;
  holders.add(queue, boss);
  const placeOf = (b: PgBoss): PgBossPlace => ({ db: b.getDb(), schema: infoOf(b).schema });
  const own = (name: string) => {
    const holder = holders.open(name);
    return holder === undefined ? [] : [placeOf(holder)];
  };
  const listed = telemetry.listedQueues;
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
function wrapSend(original: AnyFunction, ctx: Context): AnyFunction {
  const { telemetry, infoOf } = ctx;
  return function send(this: PgBoss, first: unknown): unknown {
    const args = arguments;
    const call = () => callOriginal(original, this, args);
    const name = typeof first === 'string' ? first : readProperty(first, 'name');
    if (typeof name !== 'string') return call();
    watch(this, name, ctx);
    if (infoOf(this).native) return call();
    return telemetry.send(
      () => {
        const data = typeof first === 'string' ? args[1] : readProperty(first, 'data');
        const opts = typeof first === 'string' ? args[2] : readProperty(first, 'options');
        return { queue: name, jobs: [{ queue: name, jobName: undefined }], traced: true, hookInfo: () => ({ queue: name, jobs: [{ name, data, opts }] }) };
      },
      () => call(),
    );
  };
}

function wrapInsert(original: AnyFunction, ctx: Context): AnyFunction {
  const { telemetry, infoOf } = ctx;
  return function insert(this: PgBoss, name: unknown, jobs: unknown): unknown {
    const args = arguments;
    const call = () => callOriginal(original, this, args);
    if (typeof name !== 'string' || !Array.isArray(jobs)) return call();
    watch(this, name, ctx);
    if (infoOf(this).native) return call();
    return telemetry.send(
      () => ({
        queue: name,
        jobs: jobs.map(() => ({ queue: name, jobName: undefined })),
        traced: true,
        hookInfo: () => ({ queue: name, jobs: jobs.map((j: unknown) => ({ name, data: readProperty(j, 'data') })) }),
      }),
      () => call(),
    );
  };
}
