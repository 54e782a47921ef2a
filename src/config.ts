import type { Span } from '@opentelemetry/api';
import type { InstrumentationConfig } from '@opentelemetry/instrumentation';
import type { QueueEntry } from './core/seam.js';

export type { QueueEntry };

/** What a `processHook` is given: the queue and the library's own job object. */
export interface ProcessHookInfo {
  /** Queue (destination) name. */
  queue: string;
  /** The queue library's job object (for BullMQ, its `Job`). Read it; do not change it. */
  job: unknown;
}

/** What a `sendHook` is given: the queue and the jobs being added, as passed to the library. */
export interface SendHookInfo {
  /** Queue (destination) name; for a flow, the queue of its root job. */
  queue: string;
  /** The jobs being added: `{ name, data, opts }` for each (for a flow, its root node only). */
  jobs: ReadonlyArray<{ readonly name: string; readonly data?: unknown; readonly opts?: unknown }>;
}

/** Options shared by every queue-otel instrumentation. */
export interface QueueInstrumentationConfig extends InstrumentationConfig {
  /**
   * Distinct job names reported per queue before further names are reported as `_OTHER`
   * (a guard against names generated from data blowing up the metrics backend). Default 100.
   */
  maxJobNamesPerQueue?: number;
  /**
   * Make the producer's `send` span the parent of the `process` span instead of linking to it.
   * Default false: the consumer span starts its own trace with a link, as the OpenTelemetry
   * messaging conventions recommend, so a long queue does not stretch one trace over hours.
   */
  useProducerSpanAsParent?: boolean;
  /**
   * Called with each `process` span when it starts. The only way job data gets onto a span:
   * queue-otel records no payload or return value itself. Errors thrown by the hook are caught.
   */
  processHook?: (span: Span, info: ProcessHookInfo) => void;
  /** Called with each `send` span when it starts. Errors thrown by the hook are caught. */
  sendHook?: (span: Span, info: SendHookInfo) => void;
  /**
   * Measure CPU per job (`queue.job.cpu.time`, and on the span). Default true. For jobs that share
   * the event loop this is time on the loop while the job's code runs, measured with an async
   * hook; with both this and `jobMemory` off, no hook is installed.
   */
  jobCpu?: boolean;
  /**
   * Measure memory per job (`queue.job.memory.usage`, `queue.job.memory.peak`, and on the span).
   * Default true. For jobs that share the event loop this is an attribution of heap growth.
   */
  jobMemory?: boolean;
  /**
   * Report queue depth by state and the oldest ages (`queue.job.count`, `queue.oldest.age`,
   * `queue.failed.oldest.age`), read from the queue's store. Default true.
   */
  queueState?: boolean;
  /** Milliseconds between reads of one queue's state, whatever the number of collections. Default 15000. */
  queueStateInterval?: number;
  /** Milliseconds a state read may take before it is given up for this round. Default 1000. */
  queueStateTimeout?: number;
  /**
   * One process of the cluster reads and reports each queue's state, chosen by a short lease in
   * the queue's store; others report nothing for it. Default true. False: every process reports.
   */
  queueStateLeader?: boolean;
  /**
   * Queues to report state for besides those this process creates a Queue, Worker or QueueEvents
   * for: a name, or `{ name, prefix }` with the queue's key prefix (BullMQ and Bull `prefix`,
   * Bee-Queue `prefix`; pg-boss: its schema). A queue listed by name alone is looked for under the
   * prefixes (and connections) this process's own queues use, and read only where it is found.
   */
  queues?: Array<string | QueueEntry>;
  /**
   * Queues reported per process before further queues are reported as `_OTHER`. Default 1000.
   * See README, "Cardinality", for how this and the other budgets keep every instrument under the
   * SDK's limit.
   */
  maxQueues?: number;
  /** Distinct `error.type` values reported per queue before further ones read `_OTHER`. Default 20. */
  maxErrorTypesPerQueue?: number;
  /**
   * Longest queue name, job name or error type reported. Longer ones read `_OTHER` on metrics (a
   * cut name could look like, and merge with, a real one) and are cut to this length on spans.
   * Default 256.
   */
  maxNameLength?: number;
  /**
   * The SDK's cardinality limit (attribute sets per instrument; the SDK's default is 2000).
   * queue-otel keeps every instrument under it; when the SDK's own limit can be read from the meter
   * provider and is lower, that one is used. Default 2000.
   */
  cardinalityLimit?: number;
  /**
   * For a call that adds several jobs (addBulk, a flow), a `create` span per job (up to 128), whose
   * context the job carries, linked from the call's `send` span: the messaging conventions'
   * recommendation, so each consumer links to its own job's creation. Default true.
   */
  createSpans?: boolean;
}

/** Options of {@link BullMQInstrumentation}. */
export type BullMQInstrumentationConfig = QueueInstrumentationConfig;

/** The options with defaults applied. */
export interface ResolvedConfig {
  enabled: boolean;
  maxJobNamesPerQueue: number;
  useProducerSpanAsParent: boolean;
  processHook: QueueInstrumentationConfig['processHook'];
  sendHook: QueueInstrumentationConfig['sendHook'];
  jobCpu: boolean;
  jobMemory: boolean;
  queueState: boolean;
  queueStateInterval: number;
  queueStateTimeout: number;
  queueStateLeader: boolean;
  queues: readonly QueueEntry[];
  maxQueues: number;
  maxErrorTypesPerQueue: number;
  maxNameLength: number;
  cardinalityLimit: number;
  createSpans: boolean;
}

export const DEFAULTS = {
  enabled: true,
  maxJobNamesPerQueue: 100,
  useProducerSpanAsParent: false,
  jobCpu: true,
  jobMemory: true,
  queueState: true,
  queueStateInterval: 15_000,
  queueStateTimeout: 1_000,
  queueStateLeader: true,
  maxQueues: 1000,
  maxErrorTypesPerQueue: 20,
  maxNameLength: 256,
  cardinalityLimit: 2000,
  createSpans: true,
} as const;

type Check = (value: unknown) => string | undefined;

const isBoolean: Check = (v) => (typeof v === 'boolean' ? undefined : 'a boolean');
const isFunction: Check = (v) => (typeof v === 'function' ? undefined : 'a function');
const isPositiveInteger: Check = (v) =>
  typeof v === 'number' && Number.isInteger(v) && v >= 1 ? undefined : 'an integer >= 1';

const isMilliseconds: Check = (v) =>
  typeof v === 'number' && Number.isInteger(v) && v >= 1 ? undefined : 'a whole number of milliseconds >= 1';
const isQueueEntry = (q: unknown): boolean =>
  (typeof q === 'string' && q !== '') ||
  (q !== null &&
    typeof q === 'object' &&
    typeof (q as QueueEntry).name === 'string' &&
    (q as QueueEntry).name !== '' &&
    ((q as QueueEntry).prefix === undefined || typeof (q as QueueEntry).prefix === 'string'));
const isQueueList: Check = (v) =>
  Array.isArray(v) && v.every(isQueueEntry) ? undefined : 'an array of queue names or { name, prefix } objects';

const CHECKS: Record<keyof QueueInstrumentationConfig, Check> = {
  enabled: isBoolean,
  maxJobNamesPerQueue: isPositiveInteger,
  useProducerSpanAsParent: isBoolean,
  processHook: isFunction,
  sendHook: isFunction,
  jobCpu: isBoolean,
  jobMemory: isBoolean,
  queueState: isBoolean,
  queueStateInterval: isMilliseconds,
  queueStateTimeout: isMilliseconds,
  queueStateLeader: isBoolean,
  queues: isQueueList,
  maxQueues: isPositiveInteger,
  maxErrorTypesPerQueue: isPositiveInteger,
  maxNameLength: isPositiveInteger,
  cardinalityLimit: isPositiveInteger,
  createSpans: isBoolean,
};

/**
 * Validates options and applies defaults. Throws a `TypeError` naming the first bad option
 * and what it expected, so a typo fails at startup rather than silently doing nothing.
 */
export function resolveConfig(config: unknown = {}): ResolvedConfig {
  if (config === null || typeof config !== 'object' || Array.isArray(config)) {
    throw new TypeError(`queue-otel: options must be an object, got ${describe(config)}`);
  }
  const given = config as Record<string, unknown>;
  for (const [key, value] of Object.entries(given)) {
    const check = (CHECKS as Record<string, Check | undefined>)[key];
    if (!check) {
      throw new TypeError(
        `queue-otel: unknown option "${key}"; known options: ${Object.keys(CHECKS).join(', ')}`,
      );
    }
    if (value === undefined) continue;
    const expected = check(value);
    if (expected) {
      throw new TypeError(`queue-otel: option "${key}" must be ${expected}, got ${describe(value)}`);
    }
  }
  const c = given as QueueInstrumentationConfig;
  return {
    enabled: c.enabled ?? DEFAULTS.enabled,
    maxJobNamesPerQueue: c.maxJobNamesPerQueue ?? DEFAULTS.maxJobNamesPerQueue,
    useProducerSpanAsParent: c.useProducerSpanAsParent ?? DEFAULTS.useProducerSpanAsParent,
    processHook: c.processHook,
    sendHook: c.sendHook,
    jobCpu: c.jobCpu ?? DEFAULTS.jobCpu,
    jobMemory: c.jobMemory ?? DEFAULTS.jobMemory,
    queueState: c.queueState ?? DEFAULTS.queueState,
    queueStateInterval: c.queueStateInterval ?? DEFAULTS.queueStateInterval,
    queueStateTimeout: c.queueStateTimeout ?? DEFAULTS.queueStateTimeout,
    queueStateLeader: c.queueStateLeader ?? DEFAULTS.queueStateLeader,
    queues: (c.queues ?? []).map((q) => (typeof q === 'string' ? { name: q } : { name: q.name, ...(q.prefix !== undefined ? { prefix: q.prefix } : {}) })),
    maxQueues: c.maxQueues ?? DEFAULTS.maxQueues,
    maxErrorTypesPerQueue: c.maxErrorTypesPerQueue ?? DEFAULTS.maxErrorTypesPerQueue,
    maxNameLength: c.maxNameLength ?? DEFAULTS.maxNameLength,
    cardinalityLimit: c.cardinalityLimit ?? DEFAULTS.cardinalityLimit,
    createSpans: c.createSpans ?? DEFAULTS.createSpans,
  };
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return `a ${typeof value}`;
}
