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
import type { Attempt } from '../core/attempts.js';
import type { QueueTelemetry } from '../core/telemetry.js';
import { type WithPgClient, graphileStateSource } from './graphile-worker-state.js';
import type { AnyFunction } from './patch.js';

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
export function graphileWorkerPlugin(telemetry: QueueTelemetry, version: string, active: () => boolean): GraphileWorkerPlugin {
  const inFlight = new WeakMap<object, Attempt>();
  const subscribed = new WeakSet<object>();
  const workers = new WeakMap<object, () => void>();

  const subscribe = (ctx: PluginContext, schema: string) => {
    const events = ctx.events;
    if (events === undefined || subscribed.has(events)) return;
    subscribed.add(events);
    events.on('job:start', (({ job }: { job: GraphileJob }) => {
      if (!active() || job === null || typeof job !== 'object') return;
      const attempt = telemetry.attempts.start({
        queue: schema,
        jobName: typeof job.task_identifier === 'string' ? job.task_identifier : undefined,
        jobId: job.id === undefined ? undefined : String(job.id),
        attempt: typeof job.attempts === 'number' ? job.attempts : 1,
        readyAt: timeOf(job.run_at),
        carrier: undefined,
        traced: true,
        job,
      });
      if (attempt !== undefined) inFlight.set(job, attempt);
    }) as never);
    events.on('job:complete', (({ job, error }: { job: GraphileJob; error: unknown }) => {
      const attempt = job !== null && typeof job === 'object' ? inFlight.get(job) : undefined;
      if (attempt === undefined) return;
      inFlight.delete(job);
      const made = typeof job.attempts === 'number' ? job.attempts : 1;
      const final = typeof job.max_attempts === 'number' && made >= job.max_attempts;
      if (error === null || error === undefined) telemetry.attempts.end(attempt, { outcome: 'completed', attemptsMade: made });
      else if (final) telemetry.attempts.end(attempt, { outcome: 'failed', error, attemptsMade: made });
      else telemetry.attempts.end(attempt, { outcome: 'retried', error });
    }) as never);
  };

  const wrapTasks = (tasks: Record<string, unknown>, schema: string) => {
    for (const [identifier, task] of Object.entries(tasks)) {
      if (typeof task !== 'function' || wrappedTasks.has(task)) continue;
      const wrapped = function (this: unknown, payload: unknown, helpers: Helpers): unknown {
        const args = arguments;
        const call = () => (task as AnyFunction).apply(this, args as never);
        if (helpers !== null && typeof helpers === 'object') wrapHelpers(helpers, schema, telemetry, active);
        const job = helpers?.job;
        const attempt = job !== null && typeof job === 'object' ? inFlight.get(job) : undefined;
        return attempt === undefined ? call() : telemetry.attempts.runProcessor(attempt, call, false);
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
              workers.set(worker, telemetry.addWorker(schema, () => 1));
            }
            if (typeof event?.withPgClient === 'function') watch(schema, event.withPgClient, worker, telemetry);
          } catch (error) {
            telemetry.diag.error('graphile-worker startWorker hook failed', error);
          }
        }) as never,
        stopWorker: ((_ctx: PluginContext, event: StartWorkerEvent) => {
          const worker = event?.worker;
          if (worker === undefined) return;
          workers.get(worker)?.();
          workers.delete(worker);
          unwatch(worker);
        }) as never,
      },
    },
  };
}

const wrappedTasks = new WeakSet<object>();

function timeOf(value: unknown): number | undefined {
  if (value instanceof Date) return value.getTime();
  if (typeof value === 'string') {
    const t = Date.parse(value);
    return Number.isFinite(t) ? t : undefined;
  }
  return undefined;
}

// ---- queue state ------------------------------------------------------------------------------

/** The database access of each running worker per schema; state reads use any of them. */
const holders = new Map<string, Map<object, WithPgClient>>();

function openHolder(schema: string): WithPgClient | undefined {
  const workers = holders.get(schema);
  if (workers === undefined) return undefined;
  for (const withPgClient of workers.values()) return withPgClient;
  return undefined;
}

function watch(schema: string, withPgClient: WithPgClient, worker: object | undefined, telemetry: QueueTelemetry): void {
  if (!telemetry.config.queueState) return;
  let workers = holders.get(schema);
  if (workers === undefined) holders.set(schema, (workers = new Map()));
  workers.set(worker ?? withPgClient, withPgClient);
  telemetry.watchQueue(schema, () => graphileStateSource(() => openHolder(schema), schema));
}

function unwatch(worker: object): void {
  for (const [schema, workers] of holders) {
    workers.delete(worker);
    if (workers.size === 0) holders.delete(schema);
  }
}

// ---- producers --------------------------------------------------------------------------------

interface AddSpec {
  runAt?: unknown;
}

/** `addJob(identifier, payload, spec)` in a `send` span. */
function wrapAddJob(original: AnyFunction, schema: string, telemetry: QueueTelemetry, active: () => boolean): AnyFunction {
  return function addJob(this: unknown, identifier: unknown, payload: unknown, spec?: AddSpec): unknown {
    const call = () => (original as (...a: unknown[]) => Promise<unknown>).apply(this, arguments as never);
    if (!active() || typeof identifier !== 'string') return call();
    return telemetry.sends.run(
      { queue: schema, jobs: [{ queue: schema, jobName: identifier }], traced: true, hookInfo: () => ({ queue: schema, jobs: [{ name: identifier, data: payload, opts: spec }] }) },
      () => call(),
    );
  };
}

/** `addJobs(specs)` in one `send` span. */
function wrapAddJobs(original: AnyFunction, schema: string, telemetry: QueueTelemetry, active: () => boolean): AnyFunction {
  return function addJobs(this: unknown, specs: unknown): unknown {
    const call = () => (original as (...a: unknown[]) => Promise<unknown>).apply(this, arguments as never);
    if (!active() || !Array.isArray(specs)) return call();
    const list = specs as Array<{ identifier?: unknown; payload?: unknown }>;
    return telemetry.sends.run(
      {
        queue: schema,
        jobs: list.map((s) => ({ queue: schema, jobName: typeof s?.identifier === 'string' ? s.identifier : undefined })),
        traced: true,
        hookInfo: () => ({ queue: schema, jobs: list.map((s) => ({ name: String(s?.identifier), data: s?.payload })) }),
      },
      () => call(),
    );
  };
}

const wrappedHolders = new WeakSet<object>();

/** Wraps `addJob`/`addJobs` on an object graphile-worker handed out (runner, utils, helpers). */
function wrapHelpers(holder: Helpers, schema: string, telemetry: QueueTelemetry, active: () => boolean): void {
  if (wrappedHolders.has(holder)) return;
  wrappedHolders.add(holder);
  if (typeof holder.addJob === 'function') holder.addJob = wrapAddJob(holder.addJob, schema, telemetry, active);
  if (typeof holder.addJobs === 'function') holder.addJobs = wrapAddJobs(holder.addJobs, schema, telemetry, active);
}

function schemaOf(options: unknown): string {
  const o = options as { schema?: unknown; preset?: { worker?: { schema?: unknown } } } | null | undefined;
  const schema = o?.schema ?? o?.preset?.worker?.schema;
  return typeof schema === 'string' ? schema : (process.env.GRAPHILE_WORKER_SCHEMA ?? DEFAULT_SCHEMA);
}

/**
 * Wrappers for the exported functions that hand out producers: `run` and `makeWorkerUtils`
 * resolve an object with `addJob`/`addJobs`; `quickAddJob` (`addJobAdhoc`) adds one job.
 */
export function graphileWorkerExportWrappers(telemetry: QueueTelemetry, active: () => boolean): Record<string, (original: AnyFunction) => AnyFunction> {
  const handsOut = (original: AnyFunction) =>
    function (this: unknown, options: unknown): unknown {
      const result = (original as (...a: unknown[]) => unknown).apply(this, arguments as never);
      if (!active() || !(result instanceof Promise)) return result;
      return result.then((value: unknown) => {
        if (value !== null && typeof value === 'object') {
          const schema = schemaOf(options);
          wrapHelpers(value as Helpers, schema, telemetry, active);
          // Worker utils carry a database client: a process that only adds jobs can read the state.
          const utils = value as { withPgClient?: unknown; release?: AnyFunction };
          const release = utils.release;
          if (typeof utils.withPgClient === 'function' && typeof release === 'function') {
            watch(schema, utils.withPgClient as WithPgClient, utils, telemetry);
            utils.release = function (this: unknown) {
              unwatch(utils);
              return (release as (...a: unknown[]) => unknown).apply(this, arguments as never);
            };
          }
        }
        return value;
      });
    };
  const quickAdd = (original: AnyFunction) =>
    function (this: unknown, options: unknown, identifier: unknown, payload: unknown, spec?: AddSpec): unknown {
      const call = () => (original as (...a: unknown[]) => Promise<unknown>).apply(this, arguments as never);
      if (!active() || typeof identifier !== 'string') return call();
      const schema = schemaOf(options);
      return telemetry.sends.run(
        { queue: schema, jobs: [{ queue: schema, jobName: identifier }], traced: true, hookInfo: () => ({ queue: schema, jobs: [{ name: identifier, data: payload, opts: spec }] }) },
        () => call(),
      );
    };
  return { run: handsOut, makeWorkerUtils: handsOut, quickAddJob: quickAdd, addJobAdhoc: quickAdd };
}
