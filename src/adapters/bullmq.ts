/**
 * The BullMQ adapter: which methods to wrap (bullmq 5 and 6 share them) and how to read a job's
 * facts. It hands plain facts to the core and knows nothing of OpenTelemetry.
 *
 * What BullMQ does, and why each wrap sits where it does (dist/cjs/classes/worker.js):
 * - `Worker.processJob(job, token, fetchNext)` runs one attempt: the processor (`callProcessJob`,
 *   which for a sandboxed processor hands the job to a child process or thread), then
 *   `handleCompleted` or `handleFailed`, which record the outcome in Redis in the same round trip
 *   that fetches the next job. Wrapping it gives the whole attempt, in the parent process for
 *   sandboxed processors too, and no extra Redis command.
 * - `Worker.handleFailed(err, job, ...)` is the only place the processor's error is visible.
 * - Whether a failure was final is BullMQ's decision (attempts, backoff, UnrecoverableError);
 *   `Job.moveToFailed` sets `finishedOn` only when the job goes to the failed set, and
 *   `moveToCompleted` always does, so "did finishedOn change during the attempt" is the answer.
 * - `Worker.run()` lasts as long as the worker processes jobs: the span of its concurrency.
 */
import type { Carrier } from '../core/sends.js';
import type { Attempt, AttemptEnd } from '../core/attempts.js';
import type { QueueTelemetry } from '../core/telemetry.js';
import { type TelemetryOptions, readCarrier } from './carrier.js';
import { type BullQueueObject, type RedisLike, bullmqQueueExists, bullmqStateSource, clientOf, prefixOf } from './bullmq-state.js';
import { QueueHolders } from './holders.js';
import { type RedisPlace, locator, watched } from './redis-lease.js';
import { type AnyFunction, type MethodPatch, whenSettled } from './patch.js';

/** The parts of BullMQ's classes this adapter reads; structural, so bullmq 5 and 6 both fit. */
interface JobOptions {
  delay?: number;
  telemetry?: { metadata?: string; omitContext?: boolean };
  [key: string]: unknown;
}
interface BullJob {
  id?: string;
  name: string;
  timestamp?: number;
  opts?: JobOptions;
  attemptsMade?: number;
  attemptsStarted?: number;
  finishedOn?: number;
}
interface BullWorker {
  name: string;
  /** Set when the processor is a file: jobs run in a child process or worker thread. */
  childPool?: unknown;
  opts?: { telemetry?: unknown };
  concurrency?: number;
  on(event: 'stalled', listener: (jobId: string) => void): unknown;
  off(event: 'stalled', listener: (jobId: string) => void): unknown;
}
interface BullQueue {
  name: string;
  opts?: { telemetry?: unknown };
}
interface BulkJob {
  name: string;
  data?: unknown;
  opts?: JobOptions;
}
interface FlowJob extends BulkJob {
  queueName: string;
  children?: FlowJob[];
}
interface BullFlowProducer {
  telemetry?: unknown;
}

/** The exports of the `bullmq` module this adapter patches. */
export interface BullMQExports {
  Worker?: { prototype: object };
  QueueEvents?: { prototype: object };
  ChildPool?: { prototype: object };
  Queue?: { prototype: object };
  FlowProducer?: { prototype: object };
}


/**
 * Set in a flow's job metadata for jobs that have children: such a job becomes ready only when
 * its children finish, a time BullMQ does not store, so no wait time is recorded for it.
 * Not a propagation field: propagators ignore it.
 */
const AFTER_CHILDREN = 'queue_otel_after_children';

/** Errors a processor throws on purpose to move its job elsewhere; the attempt did not fail. */
const DEFERRALS = new Set(['DelayedError', 'WaitingError', 'WaitingChildrenError']);
const RATE_LIMIT_ERROR = 'bullmq:rateLimitExceeded';

function isDeferral(error: unknown): boolean {
  const e = error as { name?: unknown; message?: unknown } | null;
  return e != null && (DEFERRALS.has(e.name as string) || e.message === RATE_LIMIT_ERROR);
}

/** The wraps that instrument one loaded copy of bullmq (CommonJS and ESM are separate copies). */
export function bullmqPatches(exports: BullMQExports, telemetry: QueueTelemetry): MethodPatch[] {
  const patches: MethodPatch[] = [];
  const worker = exports.Worker?.prototype;
  if (worker) {
    patches.push(
      { target: worker, method: 'processJob', wrap: (o) => wrapProcessJob(o, telemetry) },
      { target: worker, method: 'callProcessJob', wrap: (o) => wrapCallProcessJob(o, telemetry) },
      { target: worker, method: 'handleFailed', wrap: (o) => wrapHandleFailed(o, telemetry) },
      { target: worker, method: 'run', wrap: (o) => wrapRun(o, telemetry) },
    );
  }
  const events = exports.QueueEvents?.prototype;
  if (events) patches.push({ target: events, method: 'run', wrap: (o) => wrapWatch(o, telemetry) });
  const pool = exports.ChildPool?.prototype;
  if (pool) patches.push({ target: pool, method: 'retain', wrap: (o) => wrapRetain(o, telemetry) });
  const queue = exports.Queue?.prototype;
  if (queue) {
    patches.push(
      { target: queue, method: 'add', wrap: (o) => wrapQueueAdd(o, telemetry) },
      { target: queue, method: 'addBulk', wrap: (o) => wrapQueueAddBulk(o, telemetry) },
    );
  }
  const flow = exports.FlowProducer?.prototype;
  if (flow) {
    patches.push(
      { target: flow, method: 'add', wrap: (o) => wrapFlowAdd(o, telemetry, false) },
      { target: flow, method: 'addBulk', wrap: (o) => wrapFlowAdd(o, telemetry, true) },
    );
  }
  return patches;
}

// ---- consumer ---------------------------------------------------------------------------------

/** The error of the attempt each job is in, set by handleFailed and read when processJob ends. */
const failures = new WeakMap<object, unknown>();
/** The attempt each job is in, from processJob to callProcessJob. */
const inFlight = new WeakMap<object, Attempt>();

function wrapProcessJob(original: AnyFunction, telemetry: QueueTelemetry): AnyFunction {
  const attempts = telemetry.attempts;
  return function processJob(this: BullWorker, job: BullJob): unknown {
    const call = original as (...a: unknown[]) => Promise<unknown>;
    const attempt = attempts.start({
      queue: this.name,
      jobName: job.name,
      jobId: job.id,
      attempt: (job.attemptsMade ?? 0) + 1,
      readyAt: readyAt(job),
      carrier: carrierOf(job.opts),
      traced: !this.opts?.telemetry,
      job,
    });
    if (attempt === undefined) return call.apply(this, arguments as never);
    const finishedBefore = job.finishedOn;
    failures.delete(job);
    inFlight.set(job, attempt);
    let promise: Promise<unknown>;
    try {
      promise = call.apply(this, arguments as never);
    } catch (error) {
      inFlight.delete(job);
      attempts.end(attempt, { outcome: 'retried', error });
      throw error;
    }
    return promise.then(
      (next) => {
        inFlight.delete(job);
        attempts.end(attempt, attemptEnd(job, finishedBefore));
        return next;
      },
      (error: unknown) => {
        inFlight.delete(job);
        attempts.end(attempt, { ...attemptEnd(job, finishedBefore), error: failures.get(job) ?? error });
        throw error;
      },
    );
  };
}

/** The processor's call: run in the attempt's context (its span, its resource slices). */
function wrapCallProcessJob(original: AnyFunction, telemetry: QueueTelemetry): AnyFunction {
  return function callProcessJob(this: BullWorker, job: BullJob): unknown {
    const call = original as (...a: unknown[]) => unknown;
    const attempt = job !== null && typeof job === 'object' ? inFlight.get(job) : undefined;
    if (attempt === undefined) return call.apply(this, arguments as never);
    const args = arguments;
    return telemetry.attempts.runProcessor(attempt, () => call.apply(this, args as never), this.childPool != null);
  };
}

/** The BullMQ objects of this process per queue name, whose connections state reads can use. */
const holders = new QueueHolders<BullQueueObject>((object) => !object.closing);

/** The connection and prefix of an open object of `queue`, if it has a Redis connection. */
async function ownPlace(queue: string): Promise<RedisPlace<RedisLike> | undefined> {
  const object = holders.open(queue);
  const client = object === undefined ? undefined : clientOf(object);
  return client === undefined ? undefined : { client: await client, prefix: prefixOf(object!) };
}

/** The places (connection, prefix) of every open object of this process. */
async function allPlaces(): Promise<Array<RedisPlace<RedisLike>>> {
  const places: Array<RedisPlace<RedisLike>> = [];
  for (const object of holders.allOpen()) {
    const client = clientOf(object);
    if (client !== undefined) places.push({ client: await client, prefix: prefixOf(object) });
  }
  return places;
}

/**
 * Starts reading the state of the queue an object points at (and of the queues listed in the
 * options, where they are found). Called where Queue, Worker and QueueEvents start working: add,
 * run. After the first call for a queue it costs a map lookup.
 */
function watch(object: unknown, telemetry: QueueTelemetry): void {
  const o = object as BullQueueObject;
  if (typeof o?.name !== 'string' || !telemetry.config.queueState) return;
  holders.add(o.name, o);
  for (const { name, entry } of watched(o.name, telemetry)) {
    const exists = (place: RedisPlace<RedisLike>) => bullmqQueueExists(place, name);
    telemetry.watchQueue(name, () => bullmqStateSource(name, locator(name, entry, () => ownPlace(name), allPlaces, exists)));
  }
}

/** QueueEvents.run: watch its queue's state, then run. */
function wrapWatch(original: AnyFunction, telemetry: QueueTelemetry): AnyFunction {
  return function run(this: unknown): unknown {
    watch(this, telemetry);
    return (original as (...a: unknown[]) => unknown).apply(this, arguments as never);
  };
}

/** A sandboxed job is about to be handed to this child process or thread. */
function wrapRetain(original: AnyFunction, telemetry: QueueTelemetry): AnyFunction {
  return function retain(this: unknown): unknown {
    const promise = (original as (...a: unknown[]) => Promise<unknown>).apply(this, arguments as never);
    return promise.then(async (child) => {
      const c = child as { childProcess?: { pid?: number }; worker?: object } | undefined;
      if (c?.worker) await telemetry.attempts.attachIsolate({ kind: 'thread', thread: c.worker });
      else if (typeof c?.childProcess?.pid === 'number') await telemetry.attempts.attachIsolate({ kind: 'process', pid: c.childProcess.pid });
      return child;
    });
  };
}

/** Reads how the attempt ended from what BullMQ left on the job. */
function attemptEnd(job: BullJob, finishedBefore: number | undefined): AttemptEnd {
  const finished = job.finishedOn !== undefined && job.finishedOn !== finishedBefore;
  const error = failures.get(job);
  failures.delete(job);
  if (error === undefined) {
    // No error, yet not finished: BullMQ could not record the completion (lock lost, worker
    // closing); the job goes back to wait as stalled and runs again.
    return finished ? { outcome: 'completed', attemptsMade: job.attemptsMade } : { outcome: 'retried' };
  }
  if (isDeferral(error)) return { outcome: 'retried' };
  return finished
    ? { outcome: 'failed', error, attemptsMade: job.attemptsMade }
    : { outcome: 'retried', error };
}

function wrapHandleFailed(original: AnyFunction, telemetry: QueueTelemetry): AnyFunction {
  return function handleFailed(this: BullWorker, error: unknown, job: BullJob): unknown {
    if (job !== null && typeof job === 'object') failures.set(job, error);
    // With BullMQ's own telemetry the process span is BullMQ's and is active here; it records
    // the exception but never sets an ERROR status, so set it.
    if (this.opts?.telemetry && !isDeferral(error)) telemetry.attempts.failActiveSpan(error);
    return (original as (...a: unknown[]) => unknown).apply(this, arguments as never);
  };
}

/** Worker processes jobs while run() lasts: register its concurrency and stalled events then. */
const running = new WeakSet<object>();

function wrapRun(original: AnyFunction, telemetry: QueueTelemetry): AnyFunction {
  return function run(this: BullWorker): unknown {
    const call = () => (original as (...a: unknown[]) => Promise<unknown>).apply(this, arguments as never);
    // A second run() of a running worker throws in BullMQ; do not count the worker twice.
    if (running.has(this)) return call();
    running.add(this);
    watch(this, telemetry);
    const queue = this.name;
    const unregister = telemetry.addWorker(queue, () => this.concurrency ?? 0);
    const onStalled = () => telemetry.stalled(queue);
    this.on('stalled', onStalled);
    const cleanup = () => {
      running.delete(this);
      unregister();
      this.off('stalled', onStalled);
    };
    return whenSettled(call, cleanup);
  };
}

/**
 * When the job became ready to run, for its first attempt: when it was added, plus its delay
 * (BullMQ zeroes `job.delay` when it promotes a delayed job, so read the option). Retries and
 * jobs back from a stall have no stored ready time, so none is reported for them.
 */
function readyAt(job: BullJob): number | undefined {
  if ((job.attemptsMade ?? 0) > 0 || (job.attemptsStarted ?? 1) > 1) return undefined;
  if (typeof job.timestamp !== 'number') return undefined;
  const meta = job.opts?.telemetry?.metadata;
  if (meta !== undefined && meta.includes(AFTER_CHILDREN)) return undefined;
  const delay = job.opts?.delay;
  return job.timestamp + (typeof delay === 'number' && delay > 0 ? delay : 0);
}

/** The producer's context, from the metadata BullMQ stores with the job (a JSON carrier). */
function carrierOf(opts: JobOptions | undefined): Carrier | undefined {
  const carrier = readCarrier(opts as TelemetryOptions | undefined);
  if (carrier !== undefined) delete carrier[AFTER_CHILDREN];
  return carrier;
}

// ---- producer ---------------------------------------------------------------------------------

/**
 * Job options carrying the producer's context, in the field BullMQ's own telemetry uses
 * (`opts.telemetry.metadata`, a JSON carrier), so either side can read what the other wrote.
 * The caller's objects are never changed; a copy is returned.
 */
function withCarrier(opts: JobOptions | undefined, carrier: Carrier | undefined, afterChildren = false): JobOptions | undefined {
  if (carrier === undefined || opts?.telemetry?.omitContext || opts?.telemetry?.metadata) return opts;
  const metadata = JSON.stringify(afterChildren ? { ...carrier, [AFTER_CHILDREN]: '1' } : carrier);
  return { ...opts, telemetry: { ...opts?.telemetry, metadata } };
}

function wrapQueueAdd(original: AnyFunction, telemetry: QueueTelemetry): AnyFunction {
  return function add(this: BullQueue, name: string, data: unknown, opts?: JobOptions): unknown {
    const rest = Array.prototype.slice.call(arguments, 3);
    const queue = this.name;
    watch(this, telemetry);
    return telemetry.sends.run(
      {
        queue,
        jobs: [{ queue, jobName: name }],
        traced: !this.opts?.telemetry,
        hookInfo: () => ({ queue, jobs: [{ name, data, opts }] }),
      },
      (carrier) => (original as (...a: unknown[]) => Promise<unknown>).call(this, name, data, withCarrier(opts, carrier), ...rest),
    );
  };
}

function wrapQueueAddBulk(original: AnyFunction, telemetry: QueueTelemetry): AnyFunction {
  return function addBulk(this: BullQueue, jobs: BulkJob[]): unknown {
    if (!Array.isArray(jobs)) return (original as (...a: unknown[]) => unknown).apply(this, arguments as never);
    const rest = Array.prototype.slice.call(arguments, 1);
    const queue = this.name;
    watch(this, telemetry);
    return telemetry.sends.run(
      {
        queue,
        jobs: jobs.map((job) => ({ queue, jobName: job?.name })),
        traced: !this.opts?.telemetry,
        hookInfo: () => ({ queue, jobs }),
      },
      (carrier) =>
        (original as (...a: unknown[]) => Promise<unknown>).call(
          this,
          carrier === undefined ? jobs : jobs.map((job) => ({ ...job, opts: withCarrier(job.opts, carrier) })),
          ...rest,
        ),
    );
  };
}

function wrapFlowAdd(original: AnyFunction, telemetry: QueueTelemetry, bulk: boolean): AnyFunction {
  return function add(this: BullFlowProducer, flowOrFlows: FlowJob | FlowJob[]): unknown {
    const roots = (bulk ? flowOrFlows : [flowOrFlows]) as FlowJob[];
    if (!Array.isArray(roots) || roots.some((r) => r === null || typeof r !== 'object')) {
      return (original as (...a: unknown[]) => unknown).apply(this, arguments as never);
    }
    const rest = Array.prototype.slice.call(arguments, 1);
    const jobs: { queue: string; jobName: string }[] = [];
    const visit = (node: FlowJob) => {
      jobs.push({ queue: node.queueName, jobName: node.name });
      node.children?.forEach(visit);
    };
    roots.forEach(visit);
    const queue = roots[0]?.queueName ?? '';
    return telemetry.sends.run(
      {
        queue,
        jobs,
        traced: !this.telemetry,
        hookInfo: () => ({ queue, jobs: roots }),
      },
      (carrier) => {
        const copy = (node: FlowJob): FlowJob => {
          const children = node.children;
          const hasChildren = Array.isArray(children) && children.length > 0;
          return {
            ...node,
            opts: withCarrier(node.opts, carrier, hasChildren),
            ...(Array.isArray(children) ? { children: children.map(copy) } : {}),
          };
        };
        const arg = carrier === undefined ? flowOrFlows : bulk ? roots.map(copy) : copy(roots[0] as FlowJob);
        return (original as (...a: unknown[]) => Promise<unknown>).call(this, arg, ...rest);
      },
    );
  };
}
