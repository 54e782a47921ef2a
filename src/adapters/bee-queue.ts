/**
 * The Bee-Queue 2 adapter: which methods to wrap and how to read a job's facts. It hands plain
 * facts to the core and knows nothing of OpenTelemetry.
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
 * - Producers: `Job.prototype.save` and `Queue.prototype.saveAll`. The context goes into the job's
 *   `options` (stored with the job), never into its data.
 */
import type { Attempt, AttemptEnd } from '../core/attempts.js';
import type { QueueTelemetry } from '../core/telemetry.js';
import { type BeeRedisLike, type BeeStateQueue, beePlace, beeQueueExists, beeQueueStateSource } from './bee-queue-state.js';
import { type RedisPlace, locator, watched } from './redis-lease.js';
import { type TelemetryOptions, readCarrier, withCarrier } from './carrier.js';
import { QueueHolders } from './holders.js';
import type { AnyFunction, MethodPatch } from './patch.js';

interface BeeJobOptions extends TelemetryOptions {
  timestamp?: number;
  delay?: number;
  stacktraces?: unknown[];
}
interface BeeJob {
  id?: string | null;
  data?: unknown;
  options: BeeJobOptions;
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
export function beeQueuePatches(exports: BeeQueueExports, telemetry: QueueTelemetry): MethodPatch[] {
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
export function beeJobPatches(exports: BeeQueueExports, telemetry: QueueTelemetry): MethodPatch[] {
  const job = exports.prototype;
  return job ? [{ target: job, method: 'save', wrap: (o) => wrapSave(o, telemetry) }] : [];
}

// ---- consumer ---------------------------------------------------------------------------------

/** The attempt each job is in, from _runJob to the handler. */
const inFlight = new WeakMap<object, Attempt>();

function failuresOf(job: BeeJob): number {
  const traces = job.options?.stacktraces;
  return Array.isArray(traces) ? traces.length : 0;
}

function wrapRunJob(original: AnyFunction, telemetry: QueueTelemetry): AnyFunction {
  const attempts = telemetry.attempts;
  return function runJob(this: BeeQueue, job: BeeJob): unknown {
    const call = original as (...a: unknown[]) => Promise<unknown>;
    if (job === null || typeof job !== 'object') return call.apply(this, arguments as never);
    const failed = failuresOf(job);
    const attempt = attempts.start({
      queue: this.name,
      jobName: undefined,
      jobId: job.id ?? undefined,
      attempt: failed + 1,
      readyAt: failed === 0 ? readyAt(job) : undefined,
      carrier: readCarrier(job.options),
      traced: true,
      job,
    });
    if (attempt === undefined) return call.apply(this, arguments as never);
    inFlight.set(job, attempt);
    const number = failed + 1;
    const end = (outcome: AttemptEnd) => {
      inFlight.delete(job);
      attempts.end(attempt, outcome);
    };
    let promise: Promise<unknown>;
    try {
      promise = call.apply(this, arguments as never);
    } catch (error) {
      end({ outcome: 'retried', error });
      throw error;
    }
    return promise.then(
      (results) => {
        end(attemptEnd(results, number));
        return results;
      },
      (error: unknown) => {
        // Bee-Queue could not record the outcome (the queue closed): the job comes back as stalled.
        end({ outcome: 'retried', error });
        throw error;
      },
    );
  };
}

/** Bee-Queue's own decision, `[status, result]` (the result is the error for a failed attempt). */
function attemptEnd(results: unknown, attempt: number): AttemptEnd {
  const [status, result] = Array.isArray(results) ? results : [];
  if (status === 'succeeded') return { outcome: 'completed', attemptsMade: attempt };
  if (status === 'failed') return { outcome: 'failed', error: result, attemptsMade: attempt };
  return { outcome: 'retried', error: result };
}

/** When the job became ready for its first attempt: its delay (an absolute time) or its creation. */
function readyAt(job: BeeJob): number | undefined {
  const { delay, timestamp } = job.options ?? {};
  if (typeof delay === 'number' && delay > 0) return delay;
  return typeof timestamp === 'number' ? timestamp : undefined;
}

/** Each processing queue's unregister function, called by close(). */
const processing = new WeakMap<object, () => void>();

function wrapProcess(original: AnyFunction, telemetry: QueueTelemetry): AnyFunction {
  return function process(this: BeeQueue, ...args: unknown[]): unknown {
    const index = typeof args[0] === 'function' ? 0 : 1;
    const handler = args[index];
    const call = original as (...a: unknown[]) => unknown;
    if (typeof handler !== 'function') return call.apply(this, args);
    const wrapped = function handle(this: unknown, job: unknown): unknown {
      const attempt = job !== null && typeof job === 'object' ? inFlight.get(job) : undefined;
      const handlerArgs = arguments;
      const run = () => (handler as (...a: unknown[]) => unknown).apply(this, handlerArgs as never);
      return attempt === undefined ? run() : telemetry.attempts.runProcessor(attempt, run, false);
    };
    // Bee-Queue tells callback handlers (job, done) from promise ones by their arity.
    Object.defineProperty(wrapped, 'length', { value: (handler as AnyFunction).length });
    const copy = [...args];
    copy[index] = wrapped;
    const result = call.apply(this, copy);
    // process() throws on a second call or a non-worker queue, before this point.
    if (!processing.has(this)) {
      watch(this, telemetry);
      const queue = this.name;
      const unregister = telemetry.addWorker(queue, () => this.concurrency ?? 0);
      const onStalled = () => telemetry.stalled(queue);
      this.on('stalled', onStalled);
      processing.set(this, () => {
        unregister();
        this.removeListener('stalled', onStalled);
      });
    }
    return result;
  };
}

function wrapClose(original: AnyFunction): AnyFunction {
  return function close(this: BeeQueue): unknown {
    const stop = processing.get(this);
    processing.delete(this);
    stop?.();
    return (original as (...a: unknown[]) => unknown).apply(this, arguments as never);
  };
}

/** The Bee-Queue queues of this process per name, whose connections state reads use. */
const holders = new QueueHolders<BeeStateQueue>((queue) => !queue._isClosed);

/** The places (connection, prefix) of every open queue of this process. */
async function allPlaces(): Promise<Array<RedisPlace<BeeRedisLike>>> {
  return holders.allOpen().flatMap((queue) => beePlace(queue) ?? []);
}

function watch(queue: BeeStateQueue | undefined, telemetry: QueueTelemetry): void {
  if (typeof queue?.name !== 'string' || !telemetry.config.queueState) return;
  holders.add(queue.name, queue);
  for (const { name, entry } of watched(queue.name, telemetry)) {
    const exists = (place: RedisPlace<BeeRedisLike>) => beeQueueExists(place, name);
    telemetry.watchQueue(name, () => beeQueueStateSource(name, locator(name, entry, () => beePlace(holders.open(name)), allPlaces, exists)));
  }
}

// ---- producer ---------------------------------------------------------------------------------

/** Stores the carrier in the job's options (saved with it), unless they carry one already. */
function carry(job: BeeJob, carrier: Parameters<typeof withCarrier>[1]): void {
  if (job?.options === undefined) return;
  const carried = withCarrier(job.options, carrier);
  if (carried !== job.options && carried !== undefined) job.options.telemetry = carried.telemetry;
}

function wrapSave(original: AnyFunction, telemetry: QueueTelemetry): AnyFunction {
  return function save(this: BeeJob): unknown {
    const queue = this.queue?.name;
    const call = original as (...a: unknown[]) => Promise<unknown>;
    if (typeof queue !== 'string') return call.apply(this, arguments as never);
    watch(this.queue, telemetry);
    const args = arguments;
    return telemetry.sends.run(
      {
        queue,
        jobs: [{ queue, jobName: undefined }],
        traced: true,
        hookInfo: () => ({ queue, jobs: [{ name: queue, data: this.data, opts: this.options }] }),
      },
      (carrier) => {
        carry(this, carrier);
        return call.apply(this, args as never);
      },
    );
  };
}

function wrapSaveAll(original: AnyFunction, telemetry: QueueTelemetry): AnyFunction {
  return function saveAll(this: BeeQueue, jobs: Iterable<BeeJob>): unknown {
    const call = original as (...a: unknown[]) => Promise<unknown>;
    const list = jobs != null && typeof (jobs as Iterable<BeeJob>)[Symbol.iterator] === 'function' ? [...jobs] : undefined;
    if (list === undefined) return call.apply(this, arguments as never);
    const queue = this.name;
    watch(this, telemetry);
    return telemetry.sends.run(
      {
        queue,
        jobs: list.map(() => ({ queue, jobName: undefined })),
        traced: true,
        hookInfo: () => ({ queue, jobs: list.map((j) => ({ name: queue, data: j?.data, opts: j?.options })) }),
      },
      (carrier) => {
        for (const job of list) carry(job, carrier);
        return call.call(this, list, ...Array.prototype.slice.call(arguments, 1));
      },
    );
  };
}
