/**
 * The Bull 4 adapter: which methods to wrap and how to read a job's facts. It reports to the core
 * through the seam (core/seam.ts) and knows nothing of OpenTelemetry.
 *
 * What Bull does (lib/queue.js, lib/job.js, lib/process/child-pool.js), and why each wrap sits
 * where it does:
 * - `Queue.prototype.processJob(job)` runs one attempt: the handler, then `job.moveToCompleted` or
 *   `job.moveToFailed`, whose Redis write also fetches the next job. Wrapping it gives the whole
 *   attempt with no extra Redis command. (Bull binds it in the constructor, so queues created
 *   before the instrumentation is enabled are not instrumented.)
 * - `Queue.prototype.setHandler` stores the processor in `queue.handlers[name]`: the stored
 *   function is wrapped so that the processor alone runs in the attempt's context.
 * - `Job.prototype.moveToFailed(err)` is where the error is known and where Bull decides between a
 *   retry (attempts left, backoff) and the failed set; it sets `finishedOn` only for the latter.
 * - `Queue.prototype.run(concurrency)` lasts while the queue processes: its concurrency then.
 * - A file processor runs in a child process from `ChildPool.prototype.retain`
 *   (lib/process/child-pool.js, loaded by setHandler): wrapped there, so the core reads the
 *   child's CPU and memory, and `disable()` restores it like every other wrap.
 */
import type { AttemptEnd, AttemptFacts, AttemptHandle, JobTelemetry } from '../core/seam.js';
import { readNumber, readProperty, readString } from '../safe.js';
import { type BullRedisLike, type BullStateQueue, bullPlace, bullQueueExists, bullStateSource } from './bull-state.js';
import { type RedisPlace, locator, watched } from './redis-lease.js';
import { readCarrier, withCarrier } from './carrier.js';
import { QueueHolders } from './holders.js';
import { type AnyFunction, type MethodPatch, callOriginal, whenSettled } from './patch.js';
import { bullSchedule } from './schedule-facts.js';

/** Bull's name for jobs added without one: such jobs have no name, and none is reported. */
const DEFAULT_JOB_NAME = '__default__';

interface BullQueue extends BullStateQueue {
  handlers?: Record<string, AnyFunction>;
  on(event: 'stalled', listener: (job: unknown) => void): unknown;
  removeListener(event: 'stalled', listener: (job: unknown) => void): unknown;
}

/** The exports of the `bull` module this adapter patches (the Queue constructor, with `Job` on it). */
export interface BullExports {
  prototype?: object;
  Job?: { prototype: object };
}

/** The wraps that instrument one loaded copy of bull. */
export function bullPatches(exports: BullExports, telemetry: JobTelemetry): MethodPatch[] {
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

/**
 * The wrap of `lib/process/child-pool.js`, whose export makes pools; its prototype is reached
 * through a pool made for the purpose (two empty objects, no process).
 */
export function bullChildPoolPatches(exports: unknown, telemetry: JobTelemetry): MethodPatch[] {
  if (typeof exports !== 'function') return [];
  let prototype: object | null = null;
  try {
    prototype = Object.getPrototypeOf((exports as (shared: boolean) => object)(false)) as object | null;
  } catch {
    return [];
  }
  return prototype === null ? [] : [{ target: prototype, method: 'retain', wrap: (o) => wrapRetain(o, telemetry) }];
}

function jobName(name: unknown): string | undefined {
  return typeof name === 'string' && name !== DEFAULT_JOB_NAME ? name : undefined;
}

// ---- consumer ---------------------------------------------------------------------------------

/** The error of the attempt each job is in, set by moveToFailed and read when processJob ends. */
const failures = new WeakMap<object, { error: unknown }>();
/** The attempt each job is in, from processJob to its handler. */
const inFlight = new WeakMap<object, AttemptHandle>();

function attemptFacts(queue: BullQueue, job: object): AttemptFacts {
  const made = readNumber(job, 'attemptsMade') ?? 0;
  const id = readProperty(job, 'id');
  return {
    queue: String(readProperty(queue, 'name')),
    jobName: jobName(readProperty(job, 'name')),
    jobId: typeof id === 'string' || typeof id === 'number' ? String(id) : undefined,
    attempt: made + 1,
    readyAt: made === 0 ? readyAt(job) : undefined,
    carrier: readCarrier(readProperty(job, 'opts')),
    traced: true,
    job,
    schedule: bullSchedule(job),
  };
}

function wrapProcessJob(original: AnyFunction, telemetry: JobTelemetry): AnyFunction {
  return function processJob(this: BullQueue, job: unknown): unknown {
    const args = arguments;
    const attempt = job !== null && typeof job === 'object' ? telemetry.startAttempt(() => attemptFacts(this, job)) : undefined;
    if (attempt === undefined) return callOriginal(original, this, args);
    const j = job as object;
    const number = (readNumber(j, 'attemptsMade') ?? 0) + 1;
    const finishedBefore = readProperty(j, 'finishedOn');
    failures.delete(j);
    inFlight.set(j, attempt);
    return whenSettled(
      () => callOriginal(original, this, args),
      (threw, error) => {
        inFlight.delete(j);
        telemetry.endAttempt(attempt, attemptEnd(j, finishedBefore, number, threw, error));
      },
    );
  };
}

/** How the attempt ended, from what Bull left on the job (see the file comment). */
function attemptEnd(job: object, finishedBefore: unknown, attempt: number, threw: boolean, thrown: unknown): AttemptEnd {
  const finishedOn = readProperty(job, 'finishedOn');
  const finished = finishedOn !== undefined && finishedOn !== finishedBefore;
  const failure = failures.get(job) ?? (threw ? { error: thrown } : undefined);
  failures.delete(job);
  if (failure === undefined) return finished ? { outcome: 'completed', attemptsMade: attempt } : { outcome: 'retried' };
  const { error } = failure;
  return finished ? { outcome: 'failed', error, threw: true, attemptsMade: attempt } : { outcome: 'retried', error, threw: true };
}

function wrapMoveToFailed(original: AnyFunction): AnyFunction {
  return function moveToFailed(this: object, error: unknown): unknown {
    failures.set(this, { error });
    return callOriginal(original, this, arguments);
  };
}

/** The stored handler runs in the attempt's context; a file processor runs in a child process. */
function wrapSetHandler(original: AnyFunction, telemetry: JobTelemetry): AnyFunction {
  return function setHandler(this: BullQueue, name: string, handler: unknown): unknown {
    const result = callOriginal(original, this, arguments);
    const handlers = readProperty(this, 'handlers') as Record<string, unknown> | undefined;
    const stored = readProperty(handlers, name);
    if (handlers === undefined || typeof stored !== 'function') return result;
    const sandboxed = typeof handler === 'string';
    handlers[name] = function handle(this: unknown, job: unknown): unknown {
      const attempt = job !== null && typeof job === 'object' ? inFlight.get(job) : undefined;
      const args = arguments;
      const call = () => callOriginal(stored as AnyFunction, this, args);
      return attempt === undefined ? call() : telemetry.runAttempt(attempt, call, sandboxed);
    };
    return result;
  };
}

/**
 * A job is handed to this child process (the retain runs in the attempt's context): tell the core,
 * which reads the child's CPU from /proc, synchronously, so Bull gets the child at once.
 */
function wrapRetain(original: AnyFunction, telemetry: JobTelemetry): AnyFunction {
  return function retain(this: unknown): unknown {
    const result = callOriginal(original, this, arguments);
    if (!(result instanceof Promise)) return result;
    return result.then((child: unknown) => {
      const pid = readProperty(child, 'pid');
      if (typeof pid === 'number') void telemetry.sandboxAssigned({ kind: 'process', pid });
      return child;
    });
  };
}

/** A queue's processing loops last as long as run(): its concurrency, stalled events, state. */
function wrapRun(original: AnyFunction, telemetry: JobTelemetry): AnyFunction {
  return function run(this: BullQueue, concurrency: unknown): unknown {
    const args = arguments;
    watch(this, telemetry);
    const queue = String(readProperty(this, 'name'));
    const limit = typeof concurrency === 'number' ? concurrency : 0;
    const unregister = telemetry.workerStarted(queue, () => limit);
    const onStalled = () => telemetry.stalled(queue);
    let listening = false;
    try {
      this.on('stalled', onStalled);
      listening = true;
    } catch {
      // a queue object in a bad state: no stalled count from it
    }
    return whenSettled(
      () => callOriginal(original, this, args),
      () => {
        unregister();
        if (listening) this.removeListener('stalled', onStalled);
      },
    );
  };
}

/**
 * When a job became ready, for its first attempt: when it was added, plus its delay (Bull zeroes
 * the job's `delay` field when it promotes a delayed job, so read the option). Retries have no
 * stored ready time.
 */
function readyAt(job: object): number | undefined {
  const timestamp = readNumber(job, 'timestamp');
  if (timestamp === undefined) return undefined;
  const delay = readNumber(readProperty(job, 'opts'), 'delay');
  return timestamp + (delay !== undefined && delay > 0 ? delay : 0);
}

// ---- queue state ------------------------------------------------------------------------------

/** The Bull queues of this process per name, whose connections state reads use. */
const holders = new QueueHolders<BullStateQueue>((queue) => !queue.closing);

/** The places (connection, prefix) of every open queue of this process. */
async function allPlaces(): Promise<Array<RedisPlace<BullRedisLike>>> {
  return holders.allOpen().flatMap((queue) => bullPlace(queue) ?? []);
}

function watch(queue: BullStateQueue, telemetry: JobTelemetry): void {
  if (typeof readProperty(queue, 'name') !== 'string' || !telemetry.queueState) return;
  holders.add(queue.name, queue);
  for (const { name, entry } of watched(queue.name, telemetry.listedQueues)) {
    const exists = (place: RedisPlace<BullRedisLike>) => bullQueueExists(place, name);
    telemetry.watchQueue(name, () => bullStateSource(name, locator(name, entry, () => bullPlace(holders.open(name)), allPlaces, exists)));
  }
}

// ---- producer ---------------------------------------------------------------------------------

/** A repeatable job's repetitions are not part of this call's trace: no context for them. */
function carriedUnlessRepeat<T>(opts: T, carrier: Parameters<typeof withCarrier>[1]): T {
  return readProperty(opts, 'repeat') ? opts : withCarrier(opts, carrier);
}

function wrapAdd(original: AnyFunction, telemetry: JobTelemetry): AnyFunction {
  return function add(this: BullQueue): unknown {
    const args = Array.prototype.slice.call(arguments);
    // add(name, data, opts) or add(data, opts)
    const named = typeof args[0] === 'string';
    const optsAt = named ? 2 : 1;
    const opts = args[optsAt];
    watch(this, telemetry);
    return telemetry.send(
      () => {
        const queue = String(readProperty(this, 'name'));
        const name = named ? (args[0] as string) : undefined;
        return {
          queue,
          jobs: [{ queue, jobName: jobName(name) }],
          traced: true,
          hookInfo: () => ({ queue, jobs: [{ name: name ?? DEFAULT_JOB_NAME, data: args[optsAt - 1], opts }] }),
        };
      },
      (carrierFor) => {
        const withContext = carriedUnlessRepeat(opts, carrierFor(0));
        if (withContext !== opts) args[optsAt] = withContext;
        return callOriginal(original, this, args);
      },
    );
  };
}

function wrapAddBulk(original: AnyFunction, telemetry: JobTelemetry): AnyFunction {
  return function addBulk(this: BullQueue, jobs: unknown): unknown {
    const args = Array.prototype.slice.call(arguments);
    if (!Array.isArray(jobs)) return callOriginal(original, this, args);
    watch(this, telemetry);
    return telemetry.send(
      () => {
        const queue = String(readProperty(this, 'name'));
        return {
          queue,
          jobs: jobs.map((job) => ({ queue, jobName: jobName(readProperty(job, 'name')) })),
          traced: true,
          hookInfo: () => ({
            queue,
            jobs: jobs.map((j) => ({ name: readString(j, 'name') ?? DEFAULT_JOB_NAME, data: readProperty(j, 'data'), opts: readProperty(j, 'opts') })),
          }),
        };
      },
      (carrierFor) => {
        try {
          args[0] = jobs.map((job, i) => {
            if (job === null || typeof job !== 'object') return job;
            const opts = readProperty(job, 'opts');
            const withContext = carriedUnlessRepeat(opts, carrierFor(i));
            return withContext === opts ? job : { ...job, opts: withContext };
          });
        } catch {
          // jobs whose getters throw: Bull gets them as they are
        }
        return callOriginal(original, this, args);
      },
    );
  };
}
