import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Span, diag } from '@opentelemetry/api';
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
  /**
   * Job names whose attempts get a V8 CPU profile of their own code: only the samples taken while
   * that job's code ran on the event loop, so other jobs running at the same time are left out.
   * Written as a `.cpuprofile` file (Chrome DevTools, speedscope) to `profileDirectory`; its path
   * goes on the `process` span (`queue.job.profile.path`). For a library without job names, the
   * queue name. Default: none (off: no inspector session is opened). At most one attempt is
   * profiled at a time in a process, and each name at most once per `profileInterval`.
   * See docs/profiling.md.
   */
  profileJobs?: string[];
  /** Milliseconds between the starts of two profiles of the same job name. Default 60000. */
  profileInterval?: number;
  /**
   * Folder the profiles are written to (created if missing). Default: `queue-otel-profiles` in the
   * OS temporary folder. Each process keeps the 20 latest files it wrote there.
   */
  profileDirectory?: string;
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
  /** Empty: profiling is off. */
  profileJobs: readonly string[];
  profileInterval: number;
  profileDirectory: string;
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
  profileInterval: 60_000,
} as const;

/** Where profiles go unless `profileDirectory` says otherwise (read when options are resolved). */
export function defaultProfileDirectory(): string {
  return join(tmpdir(), 'queue-otel-profiles');
}

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
const isNameList: Check = (v) =>
  Array.isArray(v) && v.every((q) => typeof q === 'string' && q !== '') ? undefined : 'an array of job names';
const isPath: Check = (v) => (typeof v === 'string' && v.trim() !== '' && !v.includes('\0') ? undefined : 'a folder path');
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
  profileJobs: isNameList,
  profileInterval: isMilliseconds,
  profileDirectory: isPath,
};

/** Every option name, in the order the interface declares them. */
export const OPTION_NAMES = Object.keys(CHECKS) as ReadonlyArray<keyof QueueInstrumentationConfig>;

/** Where a problem with the configuration is reported; {@link warnConfig} by default. */
export type ConfigWarn = (message: string) => void;

/**
 * The options of `config` that are valid; every other one (unknown, or of the wrong type) is left
 * out and reported once through `warn`, naming it and what was expected, so its default applies.
 * Configuration never stops an application: nothing here throws.
 */
export function validOptions(config: unknown, warn: ConfigWarn = warnConfig): QueueInstrumentationConfig {
  if (config === undefined || config === null) return {};
  if (typeof config !== 'object' || Array.isArray(config)) {
    warn(`queue-otel: options must be an object, got ${describe(config)}; every option keeps its default`);
    return {};
  }
  let entries: Array<[string, unknown]>;
  try {
    entries = Object.entries(config as Record<string, unknown>);
  } catch {
    // A proxy or a throwing getter: the options cannot be read, so none applies.
    warn('queue-otel: options could not be read (reading them threw); every option keeps its default');
    return {};
  }
  const valid: Record<string, unknown> = {};
  for (const [key, value] of entries) {
    const check = (CHECKS as Record<string, Check | undefined>)[key];
    if (!check) {
      const near = closest(key, OPTION_NAMES);
      warn(
        `queue-otel: unknown option ${describe(key)} ignored${near ? ` (did you mean "${near}"?)` : ''}; ` +
          `known options: ${OPTION_NAMES.join(', ')}`,
      );
      continue;
    }
    if (value === undefined) continue;
    const expected = check(value);
    if (expected) {
      warn(`queue-otel: option ${describe(key)} must be ${expected}, got ${describe(value)}; ${fallback(key)}`);
      continue;
    }
    valid[key] = value;
  }
  return valid as QueueInstrumentationConfig;
}

/** What applies instead of a bad value of `option`, for the warning. */
export function fallback(option: string): string {
  const value = (DEFAULTS as Record<string, unknown>)[option];
  if (value !== undefined) return `using the default, ${String(value)}`;
  return option === 'queues' ? 'using none' : 'ignored';
}

/**
 * Applies defaults to the valid options of `config` (see {@link validOptions}: a bad option is
 * reported once through `warn` and its default applies; nothing throws).
 */
export function resolveConfig(config: unknown = {}, warn: ConfigWarn = warnConfig): ResolvedConfig {
  const c = validOptions(config, warn);
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
    profileJobs: [...new Set(c.profileJobs ?? [])],
    profileInterval: c.profileInterval ?? DEFAULTS.profileInterval,
    profileDirectory: c.profileDirectory ?? defaultProfileDirectory(),
  };
}

// The warnings already given in this process, shared by the CommonJS and ESM builds.
const WARNED = Symbol.for('queue-otel.config-warnings');
// Where @opentelemetry/api (every copy of major version 1) keeps its global diag logger.
const OTEL_API_GLOBAL = Symbol.for('opentelemetry.js.api.1');
/** Distinct warnings remembered; beyond it, repeats are possible but memory stays bounded. */
const MAX_REMEMBERED = 200;

/**
 * Reports a configuration problem once per process. Through OpenTelemetry's `diag` (warn level)
 * when a diag logger is set; before any is (instrumentations are usually built before the SDK
 * that sets one), as a Node.js process warning, which Node prints to stderr, so that a typo is
 * seen rather than lost.
 */
export function warnConfig(message: string): void {
  const global = globalThis as Record<symbol, unknown>;
  const warned = (global[WARNED] ??= new Set<string>()) as Set<string>;
  if (warned.has(message)) return;
  if (warned.size < MAX_REMEMBERED) warned.add(message);
  const registry = global[OTEL_API_GLOBAL] as { diag?: unknown } | undefined;
  try {
    if (registry?.diag !== undefined) diag.warn(message);
    else process.emitWarning(message, { code: 'QUEUE_OTEL_CONFIG' });
  } catch {
    // A logger that throws must not turn a warning into a failure.
  }
}

/** The known name nearest to `key` (a typo or a change of case), if one is near enough. */
export function closest(key: string, known: readonly string[]): string | undefined {
  const k = key.toLowerCase();
  // A name cut short (QUEUE_OTEL_MAX_JOB_NAME) or run on: the one that shares the most of it.
  const prefixed = known.filter((name) => k.length >= 6 && (name.toLowerCase().startsWith(k) || k.startsWith(name.toLowerCase())));
  if (prefixed.length > 0) return prefixed.reduce((a, b) => (Math.abs(a.length - k.length) <= Math.abs(b.length - k.length) ? a : b));
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const name of known) {
    const d = distance(key.toLowerCase(), name.toLowerCase());
    if (d < bestDistance) [best, bestDistance] = [name, d];
  }
  return bestDistance <= Math.max(2, Math.floor(key.length / 4)) ? best : undefined;
}

/** Levenshtein distance (names are short: the quadratic table is fine). */
function distance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) {
      next[j] = Math.min(row[j]! + 1, next[j - 1]! + 1, row[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    row = next;
  }
  return row[b.length]!;
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}…` : value);
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return `a ${typeof value}`;
}
