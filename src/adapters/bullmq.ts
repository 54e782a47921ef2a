/**
 * The BullMQ adapter: which methods to wrap (bullmq 5 and 6 share them) and how to read a job's
 * facts. It reports to the core through the seam (core/seam.ts) and knows nothing of OpenTelemetry.
 *
 * What BullMQ does, and why each wrap sits where it does (dist/cjs/classes/worker.js):
 * - `Worker.processJob(job, token, fetchNext)` runs one attempt: the processor (`callProcessJob`,
 *   which for a sandboxed processor hands the job to a child process or thread), then the
 *   completion or failure, recorded in Redis in the same round trip that fetches the next job.
 *   Wrapping it gives the whole attempt, in the parent process for sandboxed processors too, and
 *   no extra Redis command.
 * - The processor's rejection is seen where `callProcessJob` is wrapped, in every 5.x and 6.x.
 *   From 5.53.3 BullMQ also passes errors it raises itself (a job that exceeded its started
 *   attempts, a failed completion write, a deferred parent failure) to `Worker.handleFailed`,
 *   wrapped where it exists; before, that is a closure inside processJob (docs/compatibility.md).
 * - Whether a failure was final is BullMQ's decision (attempts, backoff, UnrecoverableError);
 *   `Job.moveToFailed` sets `finishedOn` only when the job goes to the failed set, and
 *   `moveToCompleted` always does, so "did finishedOn change during the attempt" is the answer.
 * - `Worker.run()` lasts as long as the worker processes jobs: the span of its concurrency.
 */
import type { AttemptEnd, AttemptFacts, AttemptHandle, Carrier, Deferral, JobTelemetry, SentJob } from '../core/seam.js';
import { finiteNumber, readNumber, readProperty, readString } from '../safe.js';
import { type BullQueueObject, type RedisLike, bullmqQueueExists, bullmqStateSource, clientOf, prefixOf } from './bullmq-state.js';
import { readCarrier, withCarrier } from './carrier.js';
import { FlowParents } from './flow-parents.js';
import { QueueHolders } from './holders.js';
import { type AnyFunction, type MethodPatch, callOriginal, whenSettled } from './patch.js';
import { type RedisPlace, locator, watched } from './redis-lease.js';
import { type BullMQJobFields, bullmqSchedule } from './schedule-facts.js';

/** The parts of a BullMQ Worker this adapter reads; structural, so bullmq 5 and 6 both fit. */
interface BullWorker {
  name: string;
  /** Set when the processor is a file: jobs run in a child process or worker thread. */
  childPool?: unknown;
  opts?: { telemetry?: unknown; concurrency?: number };
  /** A getter only from bullmq 5.25.2; before, its setter writes `opts.concurrency`. */
  concurrency?: number;
  on(event: 'stalled', listener: (jobId: string) => void): unknown;
  off(event: 'stalled', listener: (jobId: string) => void): unknown;
}

/** The exports of the `bullmq` module this adapter patches. */
export interface BullMQExports {
  Worker?: { prototype: object };
  UnrecoverableError?: new (message?: string) => Error;
  QueueEvents?: { prototype: object };
  ChildPool?: { prototype: object };
  Queue?: { prototype: object };
  FlowProducer?: { prototype: object };
}

/**
 * Set in a flow's job metadata for jobs that have children: the `traceparent`s of its children's
 * `create` spans (comma-separated, at most MAX_CHILD_LINKS), which its `process` span links to, so
 * a trace shows the flow's fan-out. Such a job becomes ready only when its last child finishes, a
 * time BullMQ does not store: see FlowParents. Not a propagation field: propagators ignore it.
 */
const AFTER_CHILDREN = 'queue_otel_after_children';
/** Set beside AFTER_CHILDREN: how many children the job has (FlowParents needs to see them all). */
const CHILD_COUNT = 'queue_otel_children';
/** Finish times of the flow children this process ran, for their parents' wait. */
const flowParents = new FlowParents();
/** Children of a flow job its process span links to (a flow may have thousands). */
const MAX_CHILD_LINKS = 32;

/** Errors a processor throws on purpose to move its job elsewhere; the attempt did not fail. */
const DEFERRALS: Record<string, Deferral> = {
  DelayedError: 'delayed',
  WaitingError: 'waiting',
  WaitingChildrenError: 'waiting_children',
};
/** The message of `Worker.RateLimitError()`: the processor hit a rate limit of its own. */
const RATE_LIMIT_ERROR = 'bullmq:rateLimitExceeded';

/** Why a thrown value defers its job (BullMQ reads them by name and message too), if it does. */
function deferralOf(error: unknown): Deferral | undefined {
  if (readProperty(error, 'message') === RATE_LIMIT_ERROR) return 'rate_limited';
  const name = readProperty(error, 'name');
  return typeof name === 'string' && Object.hasOwn(DEFERRALS, name) ? DEFERRALS[name] : undefined;
}

/** The wraps that instrument one loaded copy of bullmq (CommonJS and ESM are separate copies). */
export function bullmqPatches(exports: BullMQExports, telemetry: JobTelemetry): MethodPatch[] {
  const patches: MethodPatch[] = [];
  const worker = exports.Worker?.prototype;
  if (worker) {
    patches.push(
      { target: worker, method: 'processJob', wrap: (o) => wrapProcessJob(o, telemetry, exports.UnrecoverableError) },
      {
        target: worker,
        method: 'callProcessJob',
        wrap: (o) => wrapCallProcessJob(o, telemetry, typeof (worker as { handleFailed?: unknown }).handleFailed === 'function'),
      },
      { target: worker, method: 'handleFailed', wrap: (o) => wrapHandleFailed(o, telemetry) },
      { target: worker, method: 'run', wrap: (o) => wrapRun(o, telemetry) },
      { target: worker, method: 'waitForRateLimit', wrap: (o) => wrapWaitForRateLimit(o, telemetry) },
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

/** What the attempt of a job threw, seen where the processor runs or in handleFailed. */
const failures = new WeakMap<object, { error: unknown }>();
/**
 * The attempt each job is in, from processJob to callProcessJob. BullMQ 5 and 6 call
 * callProcessJob synchronously inside processJob, where `handingOver` carries the attempt without
 * a map entry; the map holds only the attempts whose processor is called later.
 */
const inFlight = new WeakMap<object, AttemptHandle>();
let handingOver: { job: object; attempt: AttemptHandle; taken: boolean } | undefined;
/** Jobs whose library span (BullMQ's own telemetry) was already marked failed. */
const markedFailed = new WeakSet<object>();

/** Whether BullMQ's own telemetry makes the spans of this Worker or Queue. */
function nativeTelemetry(object: unknown): boolean {
  try {
    return Boolean((object as BullWorker | null | undefined)?.opts?.telemetry);
  } catch {
    return false; // options whose getter throws: not BullMQ's telemetry
  }
}

/** The fields of a BullMQ job an attempt reads, as read once when it starts. */
interface JobView extends BullMQJobFields {
  name: unknown;
  finishedOn: unknown;
  timestamp: unknown;
  deferredFailure: unknown;
  queueQualifiedName: unknown;
}

/**
 * Reads the fields of a job in one pass. A BullMQ Job holds plain data (its options are parsed
 * JSON), so plain reads serve, where a guarded read per field costs a generic property lookup
 * each; should a getter throw anyway (a job object not made by BullMQ), every field is read
 * again, guarded.
 */
function jobView(job: object): JobView {
  try {
    const j = job as Partial<JobView>;
    return {
      id: j.id,
      name: j.name,
      finishedOn: j.finishedOn,
      opts: j.opts,
      attemptsMade: j.attemptsMade,
      attemptsStarted: j.attemptsStarted,
      timestamp: j.timestamp,
      repeatJobKey: j.repeatJobKey,
      deferredFailure: j.deferredFailure,
      queueQualifiedName: j.queueQualifiedName,
    };
  } catch {
    return guardedFields(job, JOB_VIEW_FIELDS);
  }
}

const JOB_VIEW_FIELDS = [
  'id',
  'name',
  'finishedOn',
  'opts',
  'attemptsMade',
  'attemptsStarted',
  'timestamp',
  'repeatJobKey',
  'deferredFailure',
  'queueQualifiedName',
] as const satisfies ReadonlyArray<keyof JobView>;

/** The fields read one at a time, each guarded: for a job object whose getters throw. */
function guardedFields<K extends string>(job: object, keys: readonly K[]): Record<K, unknown> {
  const fields = {} as Record<K, unknown>;
  for (const key of keys) fields[key] = readProperty(job, key);
  return fields;
}

/**
 * The producer's context stored with the job: in `opts.telemetry.metadata`, or where BullMQ's own
 * telemetry wrote it before 5.34.0, `opts.telemetryMetadata`.
 */
function jobCarrier(opts: unknown): Record<string, unknown> | undefined {
  const carrier = readCarrier(opts);
  if (carrier !== undefined) return carrier;
  const legacy = readProperty(opts, 'telemetryMetadata');
  return typeof legacy === 'string' ? readCarrier({ telemetry: { metadata: legacy } }) : undefined;
}

function attemptFacts(worker: BullWorker, job: object, view: JobView): AttemptFacts {
  const carrier = jobCarrier(view.opts);
  const { id, name } = view;
  return {
    queue: String(worker.name),
    jobName: typeof name === 'string' ? name : undefined,
    jobId: typeof id === 'string' || typeof id === 'number' ? String(id) : undefined,
    attempt: (finiteNumber(view.attemptsMade) ?? 0) + 1,
    readyAt: readyAt(view, carrier),
    carrier,
    links: childCarriers(carrier),
    traced: !nativeTelemetry(worker),
    job,
    schedule: bullmqSchedule(view),
  };
}

/** The error BullMQ fails a job with for its deferred failure: `new UnrecoverableError(reason)`. */
function deferredFailure(view: JobView, Unrecoverable: BullMQExports['UnrecoverableError']): { error: unknown } | undefined {
  const reason = view.deferredFailure;
  if (typeof reason !== 'string' || reason === '') return undefined;
  try {
    if (typeof Unrecoverable === 'function') return { error: new Unrecoverable(reason) };
  } catch {
    // fall back to a plain error of the same name
  }
  const error = new Error(reason);
  error.name = 'UnrecoverableError';
  return { error };
}

function wrapProcessJob(original: AnyFunction, telemetry: JobTelemetry, Unrecoverable: BullMQExports['UnrecoverableError']): AnyFunction {
  return function processJob(this: BullWorker, job: unknown): unknown {
    if (job === null || typeof job !== 'object') return callOriginal(original, this, arguments);
    const view = jobView(job);
    const attempt = telemetry.startAttempt(() => attemptFacts(this, job, view));
    if (attempt === undefined) return callOriginal(original, this, arguments);
    failures.delete(job);
    markedFailed.delete(job);
    // A flow parent whose child failed with failParentOnFailure (5.49.2+): BullMQ fails it with this
    // error without calling the processor, and before 5.53.3 where no wrap sees it (handleFailed,
    // where it is a method, records BullMQ's own instance instead).
    const deferred = deferredFailure(view, Unrecoverable);
    if (deferred !== undefined) failures.set(job, deferred);
    return runAttempt(original, this, arguments, job, attempt, view.finishedOn, telemetry);
  };
}

/**
 * Calls BullMQ's processJob and ends the attempt when it settles. A function of its own so that
 * what stays reachable while the job runs is only what its end needs.
 */
function runAttempt(
  original: AnyFunction,
  worker: BullWorker,
  args: IArguments,
  job: object,
  attempt: AttemptHandle,
  finishedBefore: unknown,
  telemetry: JobTelemetry,
): unknown {
  let waiting = false;
  return whenSettled(
    () => {
      const outer = handingOver;
      const handover = (handingOver = { job, attempt, taken: false });
      try {
        return callOriginal(original, worker, args);
      } finally {
        handingOver = outer;
        // Not taken yet: the processor is called after an await (or never).
        if (!handover.taken) {
          inFlight.set(job, attempt);
          waiting = true;
        }
      }
    },
    (threw, error) => {
      if (waiting) inFlight.delete(job);
      const after = endView(job);
      const end = attemptEnd(job, after, finishedBefore, threw, error);
      childFinished(job, after, end);
      telemetry.endAttempt(attempt, end);
    },
  );
}

/**
 * The processor's call: run in the attempt's context (its span, its resource slices).
 * `handledFailures`: this BullMQ has `Worker.handleFailed` (5.53.3+), which is wrapped and gets
 * every rejection of the processor; only before, or to mark BullMQ's own span, is the promise
 * observed here as well (a promise reaction more per job).
 */
function wrapCallProcessJob(original: AnyFunction, telemetry: JobTelemetry, handledFailures: boolean): AnyFunction {
  return function callProcessJob(this: BullWorker, job: unknown): unknown {
    const args = arguments;
    const attempt = job !== null && typeof job === 'object' ? takeAttempt(job) : undefined;
    if (attempt === undefined) return callOriginal(original, this, args);
    const j = job as object;
    const sandboxed = hasChildPool(this);
    let result: unknown;
    try {
      result = telemetry.runAttempt(attempt, () => callOriginal(original, this, args), sandboxed);
    } catch (error) {
      processorFailed(this, j, error, telemetry);
      throw error;
    }
    // Observed on the side: the caller gets the very promise BullMQ made.
    if (result instanceof Promise && (!handledFailures || nativeTelemetry(this))) {
      result.then(undefined, (error: unknown) => processorFailed(this, j, error, telemetry));
    }
    return result;
  };
}

/** A file processor: BullMQ hands each job to a child process or thread of its pool. */
function hasChildPool(worker: BullWorker): boolean {
  try {
    return worker.childPool != null;
  } catch {
    return false;
  }
}

/** The attempt of a job whose processor is about to be called. */
function takeAttempt(job: object): AttemptHandle | undefined {
  if (handingOver !== undefined && handingOver.job === job) {
    handingOver.taken = true;
    return handingOver.attempt;
  }
  return inFlight.get(job);
}

function processorFailed(worker: BullWorker, job: object, error: unknown, telemetry: JobTelemetry): void {
  if (!failures.has(job)) failures.set(job, { error });
  markLibrarySpan(worker, job, error, telemetry);
}

/**
 * With BullMQ's own telemetry the process span is BullMQ's and is active here; it records the
 * exception but never sets an ERROR status, so set it.
 */
function markLibrarySpan(worker: BullWorker, job: object, error: unknown, telemetry: JobTelemetry): void {
  if (!nativeTelemetry(worker) || deferralOf(error) !== undefined || markedFailed.has(job)) return;
  markedFailed.add(job);
  telemetry.failLibrarySpan(error);
}

function wrapHandleFailed(original: AnyFunction, telemetry: JobTelemetry): AnyFunction {
  return function handleFailed(this: BullWorker, error: unknown, job: unknown): unknown {
    if (job !== null && typeof job === 'object') {
      // What BullMQ acts on: the processor's error, or one it raised itself.
      failures.set(job, { error });
      markLibrarySpan(this, job, error, telemetry);
    }
    return callOriginal(original, this, arguments);
  };
}

/** What BullMQ left on a job when its attempt ended. */
interface EndView {
  finishedOn: unknown;
  attemptsMade: unknown;
  parentKey: unknown;
}

/** Reads the fields of a job that tell how its attempt ended (read as in {@link jobView}). */
function endView(job: object): EndView {
  try {
    const j = job as Partial<EndView>;
    return { finishedOn: j.finishedOn, attemptsMade: j.attemptsMade, parentKey: j.parentKey };
  } catch {
    return guardedFields(job, ['finishedOn', 'attemptsMade', 'parentKey']);
  }
}

/** Reads how the attempt ended from what BullMQ left on the job. */
function attemptEnd(job: object, after: EndView, finishedBefore: unknown, threw: boolean, thrown: unknown): AttemptEnd {
  const { finishedOn } = after;
  const finished = finishedOn !== undefined && finishedOn !== finishedBefore;
  const failure = failures.get(job) ?? (threw ? { error: thrown } : undefined);
  failures.delete(job);
  const made = finiteNumber(after.attemptsMade);
  if (failure === undefined) {
    // No error, yet not finished: BullMQ could not record the completion (lock lost, worker
    // closing); the job goes back to wait as stalled and runs again.
    return finished ? { outcome: 'completed', attemptsMade: made } : { outcome: 'retried' };
  }
  const { error } = failure;
  const deferral = deferralOf(error);
  if (deferral !== undefined) return { outcome: 'deferred', deferral };
  return finished
    ? { outcome: 'failed', error, threw: true, attemptsMade: made }
    : { outcome: 'retried', error, threw: true };
}

/**
 * The worker's main loop waits here while the queue's rate limiter holds it back (its `limiter`
 * option, or `rateLimit()` from a processor): how long it waited, each time it did.
 */
function wrapWaitForRateLimit(original: AnyFunction, telemetry: JobTelemetry): AnyFunction {
  return function waitForRateLimit(this: BullWorker): unknown {
    const limitUntil = readNumber(this, 'limitUntil') ?? 0;
    const result = callOriginal(original, this, arguments);
    if (limitUntil <= Date.now() || !(result instanceof Promise)) return result;
    const startedAt = performance.now();
    const queue = String(readProperty(this, 'name'));
    return whenSettled(
      () => result,
      () => telemetry.rateLimited(queue, (performance.now() - startedAt) / 1000),
    );
  };
}

/** Worker processes jobs while run() lasts: register its concurrency and stalled events then. */
const running = new WeakSet<object>();

function wrapRun(original: AnyFunction, telemetry: JobTelemetry): AnyFunction {
  return function run(this: BullWorker): unknown {
    const args = arguments;
    const call = () => callOriginal(original, this, args);
    // A second run() of a running worker throws in BullMQ; do not count the worker twice.
    if (running.has(this)) return call();
    running.add(this);
    watch(this, telemetry);
    const queue = String(readProperty(this, 'name'));
    const unregister = telemetry.workerStarted(queue, () => readNumber(this, 'concurrency') ?? readNumber(readProperty(this, 'opts'), 'concurrency') ?? 0);
    const onStalled = () => telemetry.stalled(queue);
    const listening = listen(this, onStalled);
    return whenSettled(call, () => {
      running.delete(this);
      unregister();
      if (listening) unlisten(this, onStalled);
    });
  };
}

function listen(worker: BullWorker, onStalled: () => void): boolean {
  try {
    worker.on('stalled', onStalled);
    return true;
  } catch {
    return false;
  }
}

function unlisten(worker: BullWorker, onStalled: () => void): void {
  try {
    worker.off('stalled', onStalled);
  } catch {
    // the worker is being torn down
  }
}

/**
 * When the job became ready to run, for its first attempt: when it was added, plus its delay
 * (BullMQ zeroes `job.delay` when it promotes a delayed job, so read the option); for a flow
 * parent, when its last child finished (plus its delay), if this process ran all of its children.
 * Retries and jobs back from a stall have no stored ready time, so none is reported for them.
 */
function readyAt(view: JobView, carrier: Record<string, unknown> | undefined): number | undefined {
  if ((finiteNumber(view.attemptsMade) ?? 0) > 0 || (finiteNumber(view.attemptsStarted) ?? 1) > 1) return undefined;
  const from = carrier?.[AFTER_CHILDREN] === undefined ? finiteNumber(view.timestamp) : childrenFinishedAt(view, carrier);
  if (from === undefined) return undefined;
  const delay = readNumber(view.opts, 'delay');
  return from + (delay !== undefined && delay > 0 ? delay : 0);
}

/** When the last child of this flow parent finished, if this process ran them all. */
function childrenFinishedAt(view: JobView, carrier: Record<string, unknown>): number | undefined {
  const queue = view.queueQualifiedName;
  const id = view.id;
  const count = Number(carrier[CHILD_COUNT]);
  if (typeof queue !== 'string' || typeof id !== 'string' || !Number.isSafeInteger(count)) return undefined;
  return flowParents.readyAt(`${queue}:${id}`, count);
}

/**
 * A flow child that ended for good in a way that lets its parent go on (completed, or failed with
 * `ignoreDependencyOnFailure` / `removeDependencyOnFailure`): remember when, for the parent's wait.
 */
function childFinished(job: object, after: EndView, end: AttemptEnd): void {
  const { parentKey } = after;
  if (typeof parentKey !== 'string') return;
  const opts = readProperty(job, 'opts');
  const released =
    end.outcome === 'completed' ||
    (end.outcome === 'failed' && (readProperty(opts, 'ignoreDependencyOnFailure') === true || readProperty(opts, 'removeDependencyOnFailure') === true));
  if (released) flowParents.childFinished(parentKey, finiteNumber(after.finishedOn) ?? Date.now());
}

// ---- queue state ------------------------------------------------------------------------------

/** The BullMQ objects of this process per queue name, whose connections state reads use. */
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
 * run. After the first call for a queue it costs a few map lookups.
 */
function watch(object: unknown, telemetry: JobTelemetry): void {
  const o = object as BullQueueObject;
  if (typeof readProperty(o, 'name') !== 'string' || !telemetry.queueState) return;
  holders.add(o.name, o);
  for (const { name, entry } of watched(o.name, telemetry.listedQueues)) {
    const exists = (place: RedisPlace<RedisLike>) => bullmqQueueExists(place, name);
    telemetry.watchQueue(name, () => bullmqStateSource(name, locator(name, entry, () => ownPlace(name), allPlaces, exists)));
  }
}

/** QueueEvents.run: watch its queue's state, then run. */
function wrapWatch(original: AnyFunction, telemetry: JobTelemetry): AnyFunction {
  return function run(this: unknown): unknown {
    watch(this, telemetry);
    return callOriginal(original, this, arguments);
  };
}

/**
 * A sandboxed job is about to be handed to this child process or thread: tell the core, which
 * reads its CPU baseline. BullMQ gets the child as soon as it would without queue-otel: the read
 * of a thread's CPU runs beside the hand-over, never before it.
 */
function wrapRetain(original: AnyFunction, telemetry: JobTelemetry): AnyFunction {
  return function retain(this: unknown): unknown {
    const result = callOriginal(original, this, arguments);
    if (!(result instanceof Promise)) return result;
    return result.then((child: unknown) => {
      const thread = readProperty(child, 'worker');
      const pid = readProperty(readProperty(child, 'childProcess'), 'pid');
      if (thread !== null && typeof thread === 'object') void telemetry.sandboxAssigned({ kind: 'thread', thread });
      else if (typeof pid === 'number') void telemetry.sandboxAssigned({ kind: 'process', pid });
      return child;
    });
  };
}

// ---- producer ---------------------------------------------------------------------------------

/**
 * Job options carrying the producer's context, in the field BullMQ's own telemetry uses
 * (`opts.telemetry.metadata`, a JSON carrier), so either side can read what the other wrote.
 * Options that ask BullMQ to omit the context are left alone. A copy; the caller's are unchanged.
 */
function carried<T>(opts: T, carrier: Carrier | undefined, children?: Array<Carrier | undefined>): T {
  if (readProperty(readProperty(opts, 'telemetry'), 'omitContext')) return opts;
  if (children === undefined) return withCarrier(opts, carrier);
  const creations = new Set<string>();
  for (const child of children) {
    const traceparent = child?.traceparent;
    if (typeof traceparent === 'string' && creations.size < MAX_CHILD_LINKS) creations.add(traceparent);
  }
  return withCarrier(opts, carrier, { [AFTER_CHILDREN]: [...creations].join(',') || '1', [CHILD_COUNT]: String(children.length) });
}

/** The carriers of a flow job's children's creation, from its metadata (see AFTER_CHILDREN). */
function childCarriers(carrier: Record<string, unknown> | undefined): Carrier[] | undefined {
  const list = carrier?.[AFTER_CHILDREN];
  if (typeof list !== 'string' || list === '1') return undefined;
  return list
    .split(',', MAX_CHILD_LINKS)
    .filter((traceparent) => traceparent !== '')
    .map((traceparent) => ({ traceparent }));
}

type HookJob = { name: string; data?: unknown; opts?: unknown };

function wrapQueueAdd(original: AnyFunction, telemetry: JobTelemetry): AnyFunction {
  return function add(this: { name: string }, name: unknown, data: unknown, opts: unknown): unknown {
    const args = Array.prototype.slice.call(arguments);
    watch(this, telemetry);
    return telemetry.send(
      () => {
        const queue = String(readProperty(this, 'name'));
        return {
          queue,
          jobs: [{ queue, jobName: typeof name === 'string' ? name : undefined }],
          traced: !nativeTelemetry(this),
          hookInfo: () => ({ queue, jobs: [{ name: String(name), data, opts }] }),
        };
      },
      (carrierFor) => {
        const withContext = carried(opts, carrierFor(0));
        if (withContext !== opts) args[2] = withContext;
        return callOriginal(original, this, args);
      },
    );
  };
}

function wrapQueueAddBulk(original: AnyFunction, telemetry: JobTelemetry): AnyFunction {
  return function addBulk(this: { name: string }, jobs: unknown): unknown {
    const args = Array.prototype.slice.call(arguments);
    if (!Array.isArray(jobs)) return callOriginal(original, this, args);
    watch(this, telemetry);
    return telemetry.send(
      () => {
        const queue = String(readProperty(this, 'name'));
        return {
          queue,
          jobs: jobs.map((job) => ({ queue, jobName: readString(job, 'name') })),
          traced: !nativeTelemetry(this),
          hookInfo: () => ({ queue, jobs: jobs as HookJob[] }),
        };
      },
      (carrierFor) => {
        args[0] = copyEach(jobs, (job, i) => ({ ...job, opts: carried(readProperty(job, 'opts'), carrierFor(i)) }));
        return callOriginal(original, this, args);
      },
    );
  };
}

/** `jobs` with each object mapped by `copy`, or `jobs` itself if any copy fails. */
function copyEach<T>(jobs: T[], copy: (job: T, index: number) => T): T[] {
  try {
    return jobs.map((job, i) => (job !== null && typeof job === 'object' ? copy(job, i) : job));
  } catch {
    return jobs; // objects whose getters throw: the library gets them as they are
  }
}

interface FlowNode {
  queueName?: unknown;
  name?: unknown;
  opts?: unknown;
  children?: unknown;
}

/** Flows deeper than this are added untraced: a flow is a tree of jobs, never this deep. */
const MAX_FLOW_DEPTH = 64;

/** Every node of the flows, depth first (the order their carriers are assigned in). */
function flowNodes(roots: unknown[]): FlowNode[] | undefined {
  const nodes: FlowNode[] = [];
  const visit = (node: unknown, depth: number): boolean => {
    if (node === null || typeof node !== 'object' || depth > MAX_FLOW_DEPTH) return false;
    nodes.push(node as FlowNode);
    const children = readProperty(node, 'children');
    return !Array.isArray(children) || children.every((child) => visit(child, depth + 1));
  };
  return roots.every((root) => visit(root, 0)) ? nodes : undefined;
}

function wrapFlowAdd(original: AnyFunction, telemetry: JobTelemetry, bulk: boolean): AnyFunction {
  return function add(this: unknown, flowOrFlows: unknown): unknown {
    const args = Array.prototype.slice.call(arguments);
    const roots = bulk ? flowOrFlows : [flowOrFlows];
    const nodes = Array.isArray(roots) ? flowNodes(roots) : undefined;
    if (nodes === undefined) return callOriginal(original, this, args);
    return telemetry.send(
      () => {
        const jobs: SentJob[] = nodes.map((node) => ({ queue: String(readProperty(node, 'queueName')), jobName: readString(node, 'name') }));
        const root = jobs[0]?.queue ?? '';
        return {
          queue: undefined,
          jobs,
          traced: !Boolean(readProperty(this, 'telemetry')),
          hookInfo: () => ({ queue: root, jobs: roots as HookJob[] }),
        };
      },
      (carrierFor) => {
        // Depth first, the order `nodes` has: a node's index is known before its children's.
        let index = 0;
        const copy = (node: FlowNode): FlowNode => {
          const i = index++;
          const children = readProperty(node, 'children');
          if (!Array.isArray(children) || children.length === 0) return { ...node, opts: carried(readProperty(node, 'opts'), carrierFor(i)) };
          const childStarts: number[] = [];
          const copies = children.map((child) => {
            childStarts.push(index);
            return copy(child as FlowNode);
          });
          return { ...node, opts: carried(readProperty(node, 'opts'), carrierFor(i), childStarts.map((c) => carrierFor(c))), children: copies };
        };
        try {
          args[0] = bulk ? (roots as FlowNode[]).map(copy) : copy((roots as FlowNode[])[0] as FlowNode);
        } catch {
          // nodes whose getters throw: the library gets the flow as it is
        }
        return callOriginal(original, this, args);
      },
    );
  };
}
