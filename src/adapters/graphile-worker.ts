/**
 * The graphile-worker 0.18 adapter: how to see jobs run and be added, and how to read a job's
 * facts. It hands plain facts to the core and knows nothing of OpenTelemetry.
 *
 * What graphile-worker does (dist/worker.js, dist/lib.js, dist/helpers.js), and why it is
 * observed where it is:
 * - Its code is an ES module whose functions are module-private, so nothing inside is wrapped.
 *   Every runner resolves its options against the exported `WorkerPreset`, whose `plugins` array
 *   is the library's own extension point: queue-otel adds a graphile-config plugin there. Its
 *   `startWorker` hook receives each worker's task list and a `withPgClient`; its listeners on the
 *   runner's `events` see `job:start` (emitted synchronously right before the task is called) and
 *   `job:complete` (right after it settled, with its error).
 * - The task functions are wrapped in place so each runs in its attempt's context; the attempt is
 *   found from `helpers.job`, the same object `job:start` carried.
 * - A job row tells its task (`task_identifier`: the job name), its attempt (`attempts`, counted
 *   when it is taken), `max_attempts`, and `run_at`: when it became ready, for retries too
 *   (graphile-worker sets it to the retry time). The outcome is graphile-worker's own rule: an
 *   error with `attempts >= max_attempts` is final (its `job:failed` event), otherwise retried.
 * - `messaging.destination.name` is the worker schema (the job table; `graphile_worker` by
 *   default), never a job's `queue_name`, which applications often make per entity (unbounded).
 * - Producers (`addJob`, `addJobs`) are closures built per runner, per utils and per job; they are
 *   wrapped where they are handed out: the runner (`run`), the utils (`makeWorkerUtils`),
 *   `quickAddJob`, and each job's helpers. A job has no field for metadata (its payload is what
 *   the task receives), so no trace context travels with it: `send` spans have no link to
 *   `process` spans.
 */
import type { AttemptFacts, AttemptHandle, JobTelemetry } from '../core/seam.js';
import { readNumber, readProperty, readString } from '../safe.js';
import { type WithPgClient, graphileStateSource } from './graphile-worker-state.js';
import { QueueHolders } from './holders.js';
import { type AnyFunction, callOriginal } from './patch.js';
import { graphileMissedRun, graphileSchedule } from './schedule-facts.js';

interface GraphileJob {
  id?: string | number;
  task_identifier?: string;
  attempts?: number;
  max_attempts?: number;
  run_at?: Date | string;
}
interface EventEmitterLike {
  on(event: string, listener: (payload: never) => void): unknown;
}
interface PluginContext {
  workerSchema?: string;
  events?: EventEmitterLike;
}
interface StartWorkerEvent {
  worker?: object;
  tasks?: Record<string, unknown>;
  withPgClient?: WithPgClient;
}
interface Helpers {
  job?: GraphileJob;
  addJob?: AnyFunction;
  addJobs?: AnyFunction;
}

/** The graphile-config plugin queue-otel adds to `WorkerPreset.plugins`. */
export interface GraphileWorkerPlugin {
  name: string;
  version: string;
  description: string;
  worker: { hooks: Record<string, (...args: never[]) => unknown> };
}

/** The parts of the `graphile-worker` module exports read or wrapped here. */
export interface GraphileWorkerExports {
  WorkerPreset?: { plugins?: unknown[] };
  run?: AnyFunction;
  runOnce?: AnyFunction;
  makeWorkerUtils?: AnyFunction;
  quickAddJob?: AnyFunction;
  addJobAdhoc?: AnyFunction;
}

const DEFAULT_SCHEMA = 'graphile_worker';

/**
 * The plugin that observes every runner. `active()` says whether the instrumentation is enabled:
 * a plugin cannot be taken back from runners already started, so it goes quiet instead.
 */
export function graphileWorkerPlugin(telemetry: JobTelemetry, version: string, active: () => boolean): GraphileWorkerPlugin {
  const inFlight = new WeakMap<object, AttemptHandle>();
  /** The job each worker runs now: a fatal error of the worker names the worker, not the job. */
  const jobOf = new WeakMap<object, object>();
  const subscribed = new WeakSet<object>();
  const workers = new WeakMap<object, () => void>();

  const subscribe = (ctx: PluginContext, schema: string) => {
    const events = ctx.events;
    if (events === undefined || subscribed.has(events)) return;
    subscribed.add(events);
    events.on('job:start', ((payload: unknown) => {
      const job = readProperty(payload, 'job');
      if (!active() || job === null || typeof job !== 'object') return;
      const attempt = telemetry.startAttempt(() => attemptFacts(schema, job));
      if (attempt !== undefined) inFlight.set(job, attempt);
      const worker = readProperty(payload, 'worker');
      if (attempt !== undefined && worker !== null && typeof worker === 'object') jobOf.set(worker, job);
      // A run the crontab missed at its minute, made up by graphile-worker's backfill.
      const missed = graphileMissedRun(job);
      if (missed !== undefined) telemetry.scheduleMissed(schema, missed);
    }) as never);
    events.on('job:complete', ((payload: unknown) => {
      const job = readProperty(payload, 'job');
      const attempt = job !== null && typeof job === 'object' ? inFlight.get(job) : undefined;
      if (attempt === undefined) return;
      inFlight.delete(job as object);
      const error = readProperty(payload, 'error');
      const made = readNumber(job, 'attempts') ?? 1;
      const max = readNumber(job, 'max_attempts');
      if (error === null || error === undefined) telemetry.endAttempt(attempt, { outcome: 'completed', attemptsMade: made });
      else if (max !== undefined && made >= max) telemetry.endAttempt(attempt, { outcome: 'failed', error, attemptsMade: made });
      else telemetry.endAttempt(attempt, { outcome: 'retried', error });
    }) as never);
    // graphile-worker could not record the outcome (a thrown value whose message cannot be read,
    // a lost connection): no job:complete comes. The job stays locked and runs again later.
    events.on('worker:fatalError', ((payload: unknown) => {
      const worker = readProperty(payload, 'worker');
      const job = worker !== null && typeof worker === 'object' ? jobOf.get(worker) : undefined;
      const attempt = job === undefined ? undefined : inFlight.get(job);
      if (attempt === undefined) return;
      inFlight.delete(job as object);
      const jobError = readProperty(payload, 'jobError');
      telemetry.endAttempt(attempt, jobError === undefined || jobError === null ? { outcome: 'retried' } : { outcome: 'retried', error: jobError, threw: true });
    }) as never);
  };

  const wrapTasks = (tasks: Record<string, unknown>, schema: string) => {
    for (const [identifier, task] of Object.entries(tasks)) {
      if (typeof task !== 'function' || wrappedTasks.has(task)) continue;
      const wrapped = function (this: unknown, payload: unknown, helpers: Helpers): unknown {
        const args = arguments;
        const call = () => callOriginal(task as AnyFunction, this, args);
        if (helpers !== null && typeof helpers === 'object') wrapHelpers(helpers, schema, telemetry, active);
        const job = readProperty(helpers, 'job');
        const attempt = job !== null && typeof job === 'object' ? inFlight.get(job) : undefined;
        return attempt === undefined ? call() : telemetry.runAttempt(attempt, call, false);
      };
      wrappedTasks.add(wrapped);
      tasks[identifier] = wrapped;
    }
  };

  return {
    name: 'QueueOtelPlugin',
    version,
    description: 'queue-otel: OpenTelemetry spans and metrics for graphile-worker jobs',
    worker: {
      hooks: {
        startWorker: ((ctx: PluginContext, event: StartWorkerEvent) => {
          try {
            if (!active()) return;
            const schema = ctx.workerSchema ?? DEFAULT_SCHEMA;
            subscribe(ctx, schema);
            if (event?.tasks !== null && typeof event?.tasks === 'object') wrapTasks(event.tasks, schema);
            const worker = event?.worker;
            if (worker !== undefined && !workers.has(worker)) {
              // Each graphile-worker worker runs one job at a time.
              workers.set(worker, telemetry.workerStarted(schema, () => 1));
            }
            if (typeof event?.withPgClient === 'function') watch(schema, event.withPgClient, worker, telemetry);
          } catch (error) {
            telemetry.warn('graphile-worker startWorker hook failed', error);
          }
        }) as never,
        stopWorker: ((_ctx: PluginContext, event: StartWorkerEvent) => {
          const worker = readProperty(event, 'worker');
          if (worker === null || typeof worker !== 'object') return;
          workers.get(worker)?.();
          workers.delete(worker);
          unwatch(worker);
        }) as never,
      },
    },
  };
}

const wrappedTasks = new WeakSet<object>();

function attemptFacts(schema: string, job: object): AttemptFacts {
  const id = readProperty(job, 'id');
  return {
    queue: schema,
    jobName: readString(job, 'task_identifier'),
    jobId: typeof id === 'string' || typeof id === 'number' ? String(id) : undefined,
    attempt: readNumber(job, 'attempts') ?? 1,
    readyAt: timeOf(readProperty(job, 'run_at')),
    carrier: undefined,
    traced: true,
    job,
    schedule: graphileSchedule(job),
  };
}

function timeOf(value: unknown): number | undefined {
  if (value instanceof Date) return value.getTime();
  if (typeof value === 'string') {
    const t = Date.parse(value);
    return Number.isFinite(t) ? t : undefined;
  }
  return undefined;
}

// ---- queue state ------------------------------------------------------------------------------

/** A running worker's (or worker utils') database access, until it stops or is released. */
interface PgAccess {
  owner: object;
  withPgClient: WithPgClient;
  open: boolean;
}

/** The database access of each running worker per schema; state reads use any of them. */
const holders = new QueueHolders<PgAccess>((access) => access.open);
const accessOf = new WeakMap<object, PgAccess>();

function watch(schema: string, withPgClient: WithPgClient, owner: object | undefined, telemetry: JobTelemetry): void {
  if (!telemetry.queueState) return;
  const key = owner ?? withPgClient;
  let access = accessOf.get(key);
  if (access === undefined) accessOf.set(key, (access = { owner: key, withPgClient, open: true }));
  holders.add(schema, access);
  telemetry.watchQueue(schema, () => graphileStateSource(() => holders.open(schema)?.withPgClient, schema));
}

function unwatch(owner: object): void {
  const access = accessOf.get(owner);
  if (access === undefined) return;
  access.open = false;
  holders.delete(access);
  accessOf.delete(owner);
}

// ---- producers --------------------------------------------------------------------------------

/** A `send` span around `call`, for jobs added to `schema`. */
function sent(telemetry: JobTelemetry, schema: string, jobs: () => Array<{ name: unknown; data?: unknown; opts?: unknown }>, call: () => unknown): unknown {
  return telemetry.send(
    () => {
      const list = jobs();
      return {
        queue: schema,
        jobs: list.map((j) => ({ queue: schema, jobName: typeof j.name === 'string' ? j.name : undefined })),
        traced: true,
        hookInfo: () => ({ queue: schema, jobs: list.map((j) => ({ name: String(j.name), data: j.data, opts: j.opts })) }),
      };
    },
    call,
  );
}

/** `addJob(identifier, payload, spec)` in a `send` span. */
function wrapAddJob(original: AnyFunction, schema: string, telemetry: JobTelemetry, active: () => boolean): AnyFunction {
  return function addJob(this: unknown, identifier: unknown, payload: unknown, spec?: unknown): unknown {
    const args = arguments;
    const call = () => callOriginal(original, this, args);
    if (!active() || typeof identifier !== 'string') return call();
    return sent(telemetry, schema, () => [{ name: identifier, data: payload, opts: spec }], call);
  };
}

/** `addJobs(specs)` in one `send` span. */
function wrapAddJobs(original: AnyFunction, schema: string, telemetry: JobTelemetry, active: () => boolean): AnyFunction {
  return function addJobs(this: unknown, specs: unknown): unknown {
    const args = arguments;
    const call = () => callOriginal(original, this, args);
    if (!active() || !Array.isArray(specs)) return call();
    return sent(telemetry, schema, () => specs.map((s: unknown) => ({ name: readProperty(s, 'identifier'), data: readProperty(s, 'payload') })), call);
  };
}

const wrappedHolders = new WeakSet<object>();

/** Wraps `addJob`/`addJobs` on an object graphile-worker handed out (runner, utils, helpers). */
function wrapHelpers(holder: Helpers, schema: string, telemetry: JobTelemetry, active: () => boolean): void {
  if (wrappedHolders.has(holder)) return;
  wrappedHolders.add(holder);
  try {
    if (typeof holder.addJob === 'function') holder.addJob = wrapAddJob(holder.addJob, schema, telemetry, active);
    if (typeof holder.addJobs === 'function') holder.addJobs = wrapAddJobs(holder.addJobs, schema, telemetry, active);
  } catch {
    // a frozen helpers object: its jobs are added untraced
  }
}

function schemaOf(options: unknown): string {
  const schema = readProperty(options, 'schema') ?? readProperty(readProperty(readProperty(options, 'preset'), 'worker'), 'schema');
  return typeof schema === 'string' ? schema : (process.env.GRAPHILE_WORKER_SCHEMA ?? DEFAULT_SCHEMA);
}

/**
 * Wrappers for the exported functions that hand out producers: `run` and `makeWorkerUtils`
 * resolve an object with `addJob`/`addJobs`; `quickAddJob` (`addJobAdhoc`) adds one job.
 */
export function graphileWorkerExportWrappers(telemetry: JobTelemetry, active: () => boolean): Record<string, (original: AnyFunction) => AnyFunction> {
  const handsOut = (original: AnyFunction) =>
    function (this: unknown, options: unknown): unknown {
      const result = callOriginal(original, this, arguments);
      if (!active() || !(result instanceof Promise)) return result;
      return result.then((value: unknown) => {
        if (value !== null && typeof value === 'object') {
          const schema = schemaOf(options);
          wrapHelpers(value as Helpers, schema, telemetry, active);
          // Worker utils carry a database client: a process that only adds jobs can read the state.
          const utils = value as { withPgClient?: unknown; release?: AnyFunction };
          const release = readProperty(utils, 'release');
          const withPgClient = readProperty(utils, 'withPgClient');
          if (typeof withPgClient === 'function' && typeof release === 'function') {
            watch(schema, withPgClient as WithPgClient, utils, telemetry);
            try {
              utils.release = function (this: unknown) {
                unwatch(utils);
                return callOriginal(release as AnyFunction, this, arguments);
              };
            } catch {
              unwatch(utils); // a frozen utils object: not read through, since its release is not seen
            }
          }
        }
        return value;
      });
    };
  const quickAdd = (original: AnyFunction) =>
    function (this: unknown, options: unknown, identifier: unknown, payload: unknown, spec?: unknown): unknown {
      const args = arguments;
      const call = () => callOriginal(original, this, args);
      if (!active() || typeof identifier !== 'string') return call();
      return sent(telemetry, schemaOf(options), () => [{ name: identifier, data: payload, opts: spec }], call);
    };
  return { run: handsOut, makeWorkerUtils: handsOut, quickAddJob: quickAdd, addJobAdhoc: quickAdd };
}
