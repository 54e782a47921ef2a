/**
 * The Bull 4 adapter: which methods to wrap and how to read a job's facts. It hands plain facts to
 * the core and knows nothing of OpenTelemetry.
 *
 * What Bull does (lib/queue.js, lib/job.js), and why each wrap sits where it does:
 * - `Queue.prototype.processJob(job)` runs one attempt: the handler, then `job.moveToCompleted` or
 *   `job.moveToFailed`, whose Redis write also fetches the next job. Wrapping it gives the whole
 *   attempt with no extra Redis command. (Bull binds it in the constructor, so queues created
 *   before the instrumentation is enabled are not instrumented.)
 * - `Queue.prototype.setHandler` stores the processor in `queue.handlers[name]`: the stored
 *   function is wrapped so that the processor alone runs in the attempt's context.
 * - `Job.prototype.moveToFailed(err)` is where the error is known and where Bull decides between a
 *   retry (attempts left, backoff) and the failed set; it sets `finishedOn` only for the latter.
 * - `Queue.prototype.run(concurrency)` lasts while the queue processes: its concurrency then.
 */
import type { Attempt, AttemptEnd } from '../core/attempts.js';
import type { QueueTelemetry } from '../core/telemetry.js';
import { type BullRedisLike, type BullStateQueue, bullPlace, bullQueueExists, bullStateSource } from './bull-state.js';
import { type RedisPlace, locator, watched } from './redis-lease.js';
import { type TelemetryOptions, readCarrier, withCarrier } from './carrier.js';
import { QueueHolders } from './holders.js';
import { type AnyFunction, type MethodPatch, whenSettled } from './patch.js';

/** Bull's name for jobs added without one: such jobs have no name, and none is reported. */
const DEFAULT_JOB_NAME = '__default__';

interface BullJobOptions extends TelemetryOptions {
  delay?: number;
  repeat?: unknown;
}
interface BullJob {
  id?: string | number;
  name?: string;
  timestamp?: number;
  opts?: BullJobOptions;
  attemptsMade?: number;
  finishedOn?: number;
}
interface ChildPoolLike {
  retain?: (...args: unknown[]) => Promise<unknown>;
}
interface BullQueue extends BullStateQueue {
  handlers?: Record<string, AnyFunction>;
  childPool?: ChildPoolLike;
  on(event: 'stalled', listener: (job: unknown) => void): unknown;
  removeListener(event: 'stalled', listener: (job: unknown) => void): unknown;
}

/** The exports of the `bull` module this adapter patches (the Queue constructor, with `Job` on it). */
export interface BullExports {
  prototype?: object;
  Job?: { prototype: object };
}

/** The wraps that instrument one loaded copy of bull. */
export function bullPatches(exports: BullExports, telemetry: QueueTelemetry): MethodPatch[] {
  const patches: MethodPatch[] = [];
  const queue = exports.prototype;
  if (queue) {
    patches.push(
      { target: queue, method: 'processJob', wrap: (o) => wrapProcessJob(o, telemetry) },
      { target: queue, method: 'setHandler', wrap: (o) => wrapSetHandler(o, telemetry) },
      { target: queue, method: 'run', wrap: (o) => wrapRun(o, telemetry) },
      { target: queue, method: 'add', wrap: (o) => wrapAdd(o, telemetry) },
      { target: queue, method: 'addBulk', wrap: (o) => wrapAddBulk(o, telemetry) },
    );
  }
  const job = exports.Job?.prototype;
  if (job) patches.push({ target: job, method: 'moveToFailed', wrap: wrapMoveToFailed });
  return patches;
}

function jobName(name: unknown): string | undefined {
  return typeof name === 'string' && name !== DEFAULT_JOB_NAME ? name : undefined;
}

// ---- consumer ---------------------------------------------------------------------------------

/** The error of the attempt each job is in, set by moveToFailed and read when processJob ends. */
const failures = new WeakMap<object, unknown>();
/** The attempt each job is in, from processJob to its handler. */
const inFlight = new WeakMap<object, Attempt>();

function wrapProcessJob(original: AnyFunction, telemetry: QueueTelemetry): AnyFunction {
  const attempts = telemetry.attempts;
  return function processJob(this: BullQueue, job: BullJob): unknown {
    const call = original as (...a: unknown[]) => Promise<unknown>;
    if (job === null || typeof job !== 'object') return call.apply(this, arguments as never);
    const made = job.attemptsMade ?? 0;
    const attempt = attempts.start({
      queue: this.name,
      jobName: jobName(job.name),
      jobId: job.id === undefined ? undefined : String(job.id),
      attempt: made + 1,
      readyAt: made === 0 ? readyAt(job) : undefined,
      carrier: readCarrier(job.opts),
      traced: true,
      job,
    });
    if (attempt === undefined) return call.apply(this, arguments as never);
    const finishedBefore = job.finishedOn;
    failures.delete(job);
    inFlight.set(job, attempt);
    const done = (error?: unknown) => {
      inFlight.delete(job);
      attempts.end(attempt, attemptEnd(job, finishedBefore, made + 1, error));
    };
    const args = arguments;
    return whenSettled(() => call.apply(this, args as never), done);
  };
}

/** How the attempt ended, from what Bull left on the job (see the file comment). */
function attemptEnd(job: BullJob, finishedBefore: number | undefined, attempt: number, thrown: unknown): AttemptEnd {
  const finished = job.finishedOn !== undefined && job.finishedOn !== finishedBefore;
  const error = failures.has(job) ? failures.get(job) : thrown;
  failures.delete(job);
  if (error === undefined) return finished ? { outcome: 'completed', attemptsMade: attempt } : { outcome: 'retried' };
  return finished ? { outcome: 'failed', error, attemptsMade: attempt } : { outcome: 'retried', error };
}

function wrapMoveToFailed(original: AnyFunction): AnyFunction {
  return function moveToFailed(this: object, error: unknown): unknown {
    failures.set(this, error ?? { message: 'Unknown reason' });
    return (original as (...a: unknown[]) => unknown).apply(this, arguments as never);
  };
}

/** The stored handler runs in the attempt's context; a file processor runs in a child process. */
function wrapSetHandler(original: AnyFunction, telemetry: QueueTelemetry): AnyFunction {
  return function setHandler(this: BullQueue, name: string, handler: unknown): unknown {
    const result = (original as (...a: unknown[]) => unknown).apply(this, arguments as never);
    const handlers = this.handlers;
    const stored = handlers?.[name];
    if (handlers === undefined || typeof stored !== 'function') return result;
    const sandboxed = typeof handler === 'string';
    if (sandboxed) watchChildPool(this.childPool, telemetry);
    handlers[name] = function handle(this: unknown, job: unknown): unknown {
      const attempt = job !== null && typeof job === 'object' ? inFlight.get(job) : undefined;
      const args = arguments;
      const call = () => (stored as (...a: unknown[]) => unknown).apply(this, args as never);
      return attempt === undefined ? call() : telemetry.attempts.runProcessor(attempt, call, sandboxed);
    };
    return result;
  };
}

const watchedPools = new WeakSet<object>();

/**
 * Bull's child pool (created by setHandler for a file processor) hands each job to a forked child:
 * tell the attempt which process runs it, so its CPU and memory are read from /proc. Wrapped on
 * the pool instance, which Bull keeps private (the retain runs in the attempt's context).
 */
function watchChildPool(pool: ChildPoolLike | undefined, telemetry: QueueTelemetry): void {
  const retain = pool?.retain;
  if (pool === undefined || typeof retain !== 'function' || watchedPools.has(pool)) return;
  watchedPools.add(pool);
  pool.retain = function (this: unknown, ...args: unknown[]) {
    return retain.apply(this, args).then(async (child) => {
      const pid = (child as { pid?: unknown } | undefined)?.pid;
      if (typeof pid === 'number') await telemetry.attempts.attachIsolate({ kind: 'process', pid });
      return child;
    });
  };
}

/** A queue's processing loops last as long as run(): its concurrency, stalled events, state. */
function wrapRun(original: AnyFunction, telemetry: QueueTelemetry): AnyFunction {
  return function run(this: BullQueue, concurrency: unknown): unknown {
    const call = () => (original as (...a: unknown[]) => Promise<unknown>).apply(this, arguments as never);
    watch(this, telemetry);
    const queue = this.name;
    const limit = typeof concurrency === 'number' ? concurrency : 0;
    const unregister = telemetry.addWorker(queue, () => limit);
    const onStalled = () => telemetry.stalled(queue);
    this.on('stalled', onStalled);
    const cleanup = () => {
      unregister();
      this.removeListener('stalled', onStalled);
    };
    return whenSettled(call, cleanup);
  };
}

/**
 * When a job became ready, for its first attempt: when it was added, plus its delay (Bull zeroes
 * the job's `delay` field when it promotes a delayed job, so read the option). Retries have no
 * stored ready time.
 */
function readyAt(job: BullJob): number | undefined {
  if (typeof job.timestamp !== 'number' || !Number.isFinite(job.timestamp)) return undefined;
  const delay = job.opts?.delay;
  return job.timestamp + (typeof delay === 'number' && delay > 0 ? delay : 0);
}

/** The Bull queues of this process per name, whose connections state reads use. */
const holders = new QueueHolders<BullStateQueue>((queue) => !queue.closing);

/** The places (connection, prefix) of every open queue of this process. */
async function allPlaces(): Promise<Array<RedisPlace<BullRedisLike>>> {
  return holders.allOpen().flatMap((queue) => bullPlace(queue) ?? []);
}

function watch(queue: BullStateQueue, telemetry: QueueTelemetry): void {
  if (typeof queue?.name !== 'string' || !telemetry.config.queueState) return;
  holders.add(queue.name, queue);
  for (const { name, entry } of watched(queue.name, telemetry)) {
    const exists = (place: RedisPlace<BullRedisLike>) => bullQueueExists(place, name);
    telemetry.watchQueue(name, () => bullStateSource(name, locator(name, entry, () => bullPlace(holders.open(name)), allPlaces, exists)));
  }
}

// ---- producer ---------------------------------------------------------------------------------

function wrapAdd(original: AnyFunction, telemetry: QueueTelemetry): AnyFunction {
  return function add(this: BullQueue, ...args: unknown[]): unknown {
    // add(name, data, opts) or add(data, opts)
    const named = typeof args[0] === 'string';
    const name = named ? (args[0] as string) : undefined;
    const data = named ? args[1] : args[0];
    const opts = (named ? args[2] : args[1]) as BullJobOptions | undefined;
    const queue = this.name;
    watch(this, telemetry);
    return telemetry.sends.run(
      {
        queue,
        jobs: [{ queue, jobName: jobName(name) }],
        traced: true,
        hookInfo: () => ({ queue, jobs: [{ name: name ?? DEFAULT_JOB_NAME, data, opts }] }),
      },
      (carrier) => {
        // A repeatable job's repetitions are not part of this call's trace: no context for them.
        const carried = opts?.repeat ? opts : withCarrier(opts, carrier);
        const call = original as (...a: unknown[]) => Promise<unknown>;
        if (carried === opts) return call.apply(this, args);
        return named ? call.call(this, name, data, carried, ...args.slice(3)) : call.call(this, data, carried, ...args.slice(2));
      },
    );
  };
}

interface BulkJob {
  name?: string;
  data?: unknown;
  opts?: BullJobOptions;
}

function wrapAddBulk(original: AnyFunction, telemetry: QueueTelemetry): AnyFunction {
  return function addBulk(this: BullQueue, jobs: BulkJob[]): unknown {
    const call = original as (...a: unknown[]) => Promise<unknown>;
    if (!Array.isArray(jobs)) return call.apply(this, arguments as never);
    const queue = this.name;
    watch(this, telemetry);
    return telemetry.sends.run(
      {
        queue,
        jobs: jobs.map((job) => ({ queue, jobName: jobName(job?.name) })),
        traced: true,
        hookInfo: () => ({ queue, jobs: jobs.map((j) => ({ name: j?.name ?? DEFAULT_JOB_NAME, data: j?.data, opts: j?.opts })) }),
      },
      (carrier) =>
        call.call(
          this,
          carrier === undefined ? jobs : jobs.map((job) => (job && !job.opts?.repeat ? { ...job, opts: withCarrier(job.opts, carrier) } : job)),
          ...Array.prototype.slice.call(arguments, 1),
        ),
    );
  };
}
