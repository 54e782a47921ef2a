/**
 * The Bee-Queue 2 adapter: which methods to wrap and how to read a job's facts. It reports to the
 * core through the seam (core/seam.ts) and knows nothing of OpenTelemetry.
 *
 * What Bee-Queue does (lib/queue.js, lib/job.js), and why each wrap sits where it does:
 * - `Queue.prototype._runJob(job)` runs one attempt: the handler, then `_finishJob`, which decides
 *   between `succeeded`, `retrying` (retries left) and `failed` and writes it in one MULTI; the
 *   promise resolves `[status, result]`. Wrapping it gives the attempt and its outcome from
 *   Bee-Queue's own decision, with no extra Redis command.
 * - `Queue.prototype.process(concurrency, handler)`: the handler is wrapped so that it alone runs in
 *   the attempt's context; the queue's concurrency counts from then until `close()`.
 * - Jobs have no name, and no attempt counter: the attempt is one more than the failures recorded
 *   in `options.stacktraces` (Bee-Queue adds one per failed attempt). A job's ready time is stored
 *   for its first attempt only (`options.timestamp`, or `options.delay`, an absolute time).
 * - Producers: `Job.prototype.save` and `Queue.prototype.saveAll` make the `send` span; both store
 *   a job through `Job.prototype._save`, which serializes `job.options` synchronously: there, and
 *   only for that call, the job's options are a copy carrying the producer's context, so the
 *   context is stored with the job while the application's options object is never changed.
 */
import type { AttemptEnd, AttemptFacts, AttemptHandle, Carrier, JobTelemetry } from '../core/seam.js';
import { readNumber, readProperty } from '../safe.js';
import { type BeeRedisLike, type BeeStateQueue, beePlace, beeQueueExists, beeQueueStateSource } from './bee-queue-state.js';
import { type RedisPlace, locator, watched } from './redis-lease.js';
import { readCarrier, withCarrier } from './carrier.js';
import { QueueHolders } from './holders.js';
import { type AnyFunction, type MethodPatch, callOriginal, whenSettled } from './patch.js';

interface BeeJob {
  id?: string | null;
  data?: unknown;
  options?: unknown;
  queue?: BeeQueue;
}
interface BeeQueue extends BeeStateQueue {
  concurrency?: number;
  on(event: 'stalled', listener: (jobId: string) => void): unknown;
  removeListener(event: 'stalled', listener: (jobId: string) => void): unknown;
}

/** The exports of `bee-queue` (the Queue class) and of its `lib/job.js` (the Job class). */
export interface BeeQueueExports {
  prototype?: object;
}

/** The wraps of the Queue class. */
export function beeQueuePatches(exports: BeeQueueExports, telemetry: JobTelemetry): MethodPatch[] {
  const queue = exports.prototype;
  if (!queue) return [];
  return [
    { target: queue, method: '_runJob', wrap: (o) => wrapRunJob(o, telemetry) },
    { target: queue, method: 'process', wrap: (o) => wrapProcess(o, telemetry) },
    { target: queue, method: 'close', wrap: wrapClose },
    { target: queue, method: 'saveAll', wrap: (o) => wrapSaveAll(o, telemetry) },
  ];
}

/** The wraps of the Job class (`bee-queue/lib/job.js`). */
export function beeJobPatches(exports: BeeQueueExports, telemetry: JobTelemetry): MethodPatch[] {
  const job = exports.prototype;
  if (!job) return [];
  return [
    { target: job, method: 'save', wrap: (o) => wrapSave(o, telemetry) },
    { target: job, method: '_save', wrap: wrapStore },
  ];
}

// ---- consumer ---------------------------------------------------------------------------------

/** The attempt each job is in, from _runJob to the handler. */
const inFlight = new WeakMap<object, AttemptHandle>();

function failuresOf(job: object): number {
  const traces = readProperty(readProperty(job, 'options'), 'stacktraces');
  return Array.isArray(traces) ? traces.length : 0;
}

function attemptFacts(queue: BeeQueue, job: object, failed: number): AttemptFacts {
  const id = readProperty(job, 'id');
  return {
    queue: String(readProperty(queue, 'name')),
    jobName: undefined,
    jobId: typeof id === 'string' || typeof id === 'number' ? String(id) : undefined,
    attempt: failed + 1,
    readyAt: failed === 0 ? readyAt(job) : undefined,
    carrier: readCarrier(readProperty(job, 'options')),
    traced: true,
    job,
  };
}

function wrapRunJob(original: AnyFunction, telemetry: JobTelemetry): AnyFunction {
  return function runJob(this: BeeQueue, job: unknown): unknown {
    const args = arguments;
    if (job === null || typeof job !== 'object') return callOriginal(original, this, args);
    const failed = failuresOf(job);
    const attempt = telemetry.startAttempt(() => attemptFacts(this, job, failed));
    if (attempt === undefined) return callOriginal(original, this, args);
    inFlight.set(job, attempt);
    return whenSettled(
      () => callOriginal(original, this, args),
      (threw, errorOrResults) => {
        inFlight.delete(job);
        // A rejection: Bee-Queue could not record the outcome (the queue closed); the job comes
        // back as stalled.
        telemetry.endAttempt(attempt, threw ? { outcome: 'retried', error: errorOrResults, threw: true } : attemptEnd(errorOrResults, failed + 1));
      },
    );
  };
}

/** Bee-Queue's own decision, `[status, result]` (the result is the error for a failed attempt). */
function attemptEnd(results: unknown, attempt: number): AttemptEnd {
  const [status, result] = Array.isArray(results) ? results : [];
  if (status === 'succeeded') return { outcome: 'completed', attemptsMade: attempt };
  if (status === 'failed') return { outcome: 'failed', error: result, threw: true, attemptsMade: attempt };
  return { outcome: 'retried', error: result, threw: true };
}

/** When the job became ready for its first attempt: its delay (an absolute time) or its creation. */
function readyAt(job: object): number | undefined {
  const options = readProperty(job, 'options');
  const delay = readNumber(options, 'delay');
  if (delay !== undefined && delay > 0) return delay;
  return readNumber(options, 'timestamp');
}

/** Each processing queue's unregister function, called by close(). */
const processing = new WeakMap<object, () => void>();

function wrapProcess(original: AnyFunction, telemetry: JobTelemetry): AnyFunction {
  return function process(this: BeeQueue, ...args: unknown[]): unknown {
    const index = typeof args[0] === 'function' ? 0 : 1;
    const handler = args[index];
    if (typeof handler !== 'function') return callOriginal(original, this, args);
    const wrapped = function handle(this: unknown, job: unknown): unknown {
      const attempt = job !== null && typeof job === 'object' ? inFlight.get(job) : undefined;
      const handlerArgs = arguments;
      const run = () => callOriginal(handler as AnyFunction, this, handlerArgs);
      return attempt === undefined ? run() : telemetry.runAttempt(attempt, run, false);
    };
    // Bee-Queue tells callback handlers (job, done) from promise ones by their arity.
    Object.defineProperty(wrapped, 'length', { value: (handler as AnyFunction).length });
    const copy = [...args];
    copy[index] = wrapped;
    const result = callOriginal(original, this, copy);
    // process() throws on a second call or a non-worker queue, before this point.
    if (!processing.has(this)) {
      watch(this, telemetry);
      const queue = String(readProperty(this, 'name'));
      const unregister = telemetry.workerStarted(queue, () => readNumber(this, 'concurrency') ?? 0);
      const onStalled = () => telemetry.stalled(queue);
      let listening = false;
      try {
        this.on('stalled', onStalled);
        listening = true;
      } catch {
        // a queue object in a bad state: no stalled count from it
      }
      processing.set(this, () => {
        unregister();
        if (listening) this.removeListener('stalled', onStalled);
      });
    }
    return result;
  };
}

function wrapClose(original: AnyFunction): AnyFunction {
  return function close(this: BeeQueue): unknown {
    const stop = processing.get(this);
    processing.delete(this);
    try {
      stop?.();
    } catch {
      // the queue is going away either way
    }
    return callOriginal(original, this, arguments);
  };
}

/** The Bee-Queue queues of this process per name, whose connections state reads use. */
const holders = new QueueHolders<BeeStateQueue>((queue) => !queue._isClosed);

/** The places (connection, prefix) of every open queue of this process. */
async function allPlaces(): Promise<Array<RedisPlace<BeeRedisLike>>> {
  return holders.allOpen().flatMap((queue) => beePlace(queue) ?? []);
}

function watch(queue: BeeStateQueue | undefined, telemetry: JobTelemetry): void {
  if (queue === undefined || typeof readProperty(queue, 'name') !== 'string' || !telemetry.queueState) return;
  holders.add(queue.name, queue);
  for (const { name, entry } of watched(queue.name, telemetry.listedQueues)) {
    const exists = (place: RedisPlace<BeeRedisLike>) => beeQueueExists(place, name);
    telemetry.watchQueue(name, () => beeQueueStateSource(name, locator(name, entry, () => beePlace(holders.open(name)), allPlaces, exists)));
  }
}

// ---- producer ---------------------------------------------------------------------------------

/** The carrier each job is to be stored with, from save/saveAll until its _save runs. */
const pending = new WeakMap<object, Carrier>();

/** Job._save: serializes `this.options` synchronously; a copy carrying the context stands in. */
function wrapStore(original: AnyFunction): AnyFunction {
  return function _save(this: BeeJob): unknown {
    const carrier = pending.get(this);
    if (carrier === undefined) return callOriginal(original, this, arguments);
    pending.delete(this);
    const own = this.options;
    const copy = withCarrier(own, carrier);
    if (copy === own) return callOriginal(original, this, arguments);
    this.options = copy;
    try {
      return callOriginal(original, this, arguments);
    } finally {
      this.options = own;
    }
  };
}

function wrapSave(original: AnyFunction, telemetry: JobTelemetry): AnyFunction {
  return function save(this: BeeJob): unknown {
    const args = arguments;
    const queue = readProperty(readProperty(this, 'queue'), 'name');
    if (typeof queue !== 'string') return callOriginal(original, this, args);
    watch(this.queue, telemetry);
    return telemetry.send(
      () => ({
        queue,
        jobs: [{ queue, jobName: undefined }],
        traced: true,
        hookInfo: () => ({ queue, jobs: [{ name: queue, data: this.data, opts: this.options }] }),
      }),
      (carrierFor) => {
        const carrier = carrierFor(0);
        if (carrier !== undefined) pending.set(this, carrier);
        try {
          return callOriginal(original, this, args);
        } finally {
          pending.delete(this); // _save ran synchronously inside save
        }
      },
    );
  };
}

function wrapSaveAll(original: AnyFunction, telemetry: JobTelemetry): AnyFunction {
  return function saveAll(this: BeeQueue, jobs: unknown): unknown {
    const args = arguments;
    let list: unknown[] | undefined;
    try {
      list = jobs != null && typeof (jobs as Iterable<unknown>)[Symbol.iterator] === 'function' ? [...(jobs as Iterable<unknown>)] : undefined;
    } catch {
      list = undefined;
    }
    if (list === undefined) return callOriginal(original, this, args);
    const all = list;
    watch(this, telemetry);
    return telemetry.send(
      () => {
        const queue = String(readProperty(this, 'name'));
        return {
          queue,
          jobs: all.map(() => ({ queue, jobName: undefined })),
          traced: true,
          hookInfo: () => ({ queue, jobs: all.map((j) => ({ name: queue, data: readProperty(j, 'data'), opts: readProperty(j, 'options') })) }),
        };
      },
      (carrierFor) => {
        all.forEach((job, i) => {
          const carrier = carrierFor(i);
          if (job !== null && typeof job === 'object' && carrier !== undefined) pending.set(job, carrier);
        });
        // saveAll iterates what it is given once: hand it the list already read.
        const copy = Array.prototype.slice.call(args);
        copy[0] = all;
        return whenSettled(
          () => callOriginal(original, this, copy),
          () => {
            for (const job of all) if (job !== null && typeof job === 'object') pending.delete(job);
          },
        );
      },
    );
  };
}
