import { createRequire } from 'node:module';
import { isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { type ConfigWarn, type QueueInstrumentationConfig, closest, fallback, validOptions, warnConfig } from '../config.js';

/** What `queue-otel/register` reads from `QUEUE_OTEL_*` environment variables. */
export interface RegisterSettings {
  /** Options for every queue instrumentation. */
  instrumentation: QueueInstrumentationConfig;
  /** The live dashboard, when `QUEUE_OTEL_DASHBOARD_PORT` is set. */
  dashboard: { port: number; host: string } | undefined;
  /** Whether register adds OpenTelemetry's ESM loader hook (`QUEUE_OTEL_ESM_HOOK`). */
  esmHook: boolean;
  /** Longest the flush at shutdown may hold up the exit, ms (`QUEUE_OTEL_SHUTDOWN_TIMEOUT`). */
  shutdownTimeoutMs: number;
}

/**
 * Longest the flush at shutdown may hold up the exit by default: under the 2 s an orchestrator's
 * stop usually allows before it kills, even when the exporter's endpoint does not answer (an
 * export's own timeout is 10 s, with retries).
 */
export const DEFAULT_SHUTDOWN_TIMEOUT_MS = 1_500;

type Env = Readonly<Record<string, string | undefined>>;

/** A value that could not be read: the warning says what was expected and what applies instead. */
class Invalid {
  constructor(readonly expected: string) {}
}

/** A parser of one variable's text: the value, or what was expected. */
type Parse<T> = (text: string) => T | Invalid;

const boolean: Parse<boolean> = (text) => {
  const t = text.trim().toLowerCase();
  if (t === 'true') return true;
  if (t === 'false') return false;
  return new Invalid('"true" or "false"');
};

const integer = (min: number, max: number, what: string): Parse<number> => (text) => {
  const t = text.trim();
  const n = /^\d+$/.test(t) ? Number(t) : NaN;
  return Number.isSafeInteger(n) && n >= min && n <= max ? n : new Invalid(what);
};

const list: Parse<string[]> = (text) => {
  const items = text.split(',').map((s) => s.trim());
  return items.some((s) => s === '') ? new Invalid('a comma-separated list of queue names') : items;
};

const MILLISECONDS = integer(1, Number.MAX_SAFE_INTEGER, 'a whole number of milliseconds >= 1');
const COUNT = integer(1, Number.MAX_SAFE_INTEGER, 'an integer >= 1');
const PORT = integer(0, 65535, 'a port number from 0 to 65535 (0: any free port)');

const names: Parse<string[]> = (text) => {
  const items = text.split(',').map((s) => s.trim());
  return items.some((s) => s === '') ? new Invalid('a comma-separated list of job names') : items;
};

const path: Parse<string> = (text) => text.trim();

/**
 * Every option of {@link QueueInstrumentationConfig}, each with its variable. A `Record` over the
 * option keys: adding an option to the config without a variable here fails to compile.
 */
const OPTION_VARIABLES: Record<keyof QueueInstrumentationConfig, { name: string; parse?: Parse<unknown> }> = {
  enabled: { name: 'QUEUE_OTEL_ENABLED', parse: boolean },
  maxJobNamesPerQueue: { name: 'QUEUE_OTEL_MAX_JOB_NAMES_PER_QUEUE', parse: COUNT },
  useProducerSpanAsParent: { name: 'QUEUE_OTEL_USE_PRODUCER_SPAN_AS_PARENT', parse: boolean },
  // Functions cannot be written in a variable: both come from the module QUEUE_OTEL_HOOKS names.
  processHook: { name: 'QUEUE_OTEL_HOOKS' },
  sendHook: { name: 'QUEUE_OTEL_HOOKS' },
  jobCpu: { name: 'QUEUE_OTEL_JOB_CPU', parse: boolean },
  jobMemory: { name: 'QUEUE_OTEL_JOB_MEMORY', parse: boolean },
  queueState: { name: 'QUEUE_OTEL_QUEUE_STATE', parse: boolean },
  queueStateInterval: { name: 'QUEUE_OTEL_QUEUE_STATE_INTERVAL', parse: MILLISECONDS },
  queueStateTimeout: { name: 'QUEUE_OTEL_QUEUE_STATE_TIMEOUT', parse: MILLISECONDS },
  queueStateLeader: { name: 'QUEUE_OTEL_QUEUE_STATE_LEADER', parse: boolean },
  queues: { name: 'QUEUE_OTEL_QUEUES', parse: list },
  maxQueues: { name: 'QUEUE_OTEL_MAX_QUEUES', parse: COUNT },
  maxErrorTypesPerQueue: { name: 'QUEUE_OTEL_MAX_ERROR_TYPES_PER_QUEUE', parse: COUNT },
  maxNameLength: { name: 'QUEUE_OTEL_MAX_NAME_LENGTH', parse: COUNT },
  cardinalityLimit: { name: 'QUEUE_OTEL_CARDINALITY_LIMIT', parse: COUNT },
  createSpans: { name: 'QUEUE_OTEL_CREATE_SPANS', parse: boolean },
  profileJobs: { name: 'QUEUE_OTEL_PROFILE_JOBS', parse: names },
  profileInterval: { name: 'QUEUE_OTEL_PROFILE_INTERVAL', parse: MILLISECONDS },
  profileDirectory: { name: 'QUEUE_OTEL_PROFILE_DIRECTORY', parse: path },
};

/** Variables of register itself, not options of the instrumentations. */
const REGISTER_VARIABLES = [
  'QUEUE_OTEL_DASHBOARD_PORT',
  'QUEUE_OTEL_DASHBOARD_HOST',
  'QUEUE_OTEL_ESM_HOOK',
  'QUEUE_OTEL_SHUTDOWN_TIMEOUT',
] as const;

/** Every `QUEUE_OTEL_*` variable register understands (docs/configuration.md documents each). */
export const KNOWN_VARIABLES: readonly string[] = [
  ...new Set([...Object.values(OPTION_VARIABLES).map((v) => v.name), ...REGISTER_VARIABLES]),
];

/**
 * Reads `QUEUE_OTEL_*` from `env`. Nothing here stops the application: an unknown `QUEUE_OTEL_`
 * variable (a typo, or one meant for a newer version) or a value that cannot be read is reported
 * once through `warn`, naming the variable and what it expected, and the default applies.
 * `cwd` is where a relative `QUEUE_OTEL_HOOKS` path is resolved from.
 */
export function readSettings(env: Env, cwd = process.cwd(), warn: ConfigWarn = warnConfig): RegisterSettings {
  for (const key of Object.keys(env)) {
    if (key.startsWith('QUEUE_OTEL_') && !KNOWN_VARIABLES.includes(key) && env[key] !== undefined) {
      const near = closest(key, KNOWN_VARIABLES);
      warn(`queue-otel: unknown environment variable ${key} ignored${near ? ` (did you mean ${near}?)` : ''}; known: ${KNOWN_VARIABLES.join(', ')}`);
    }
  }
  const given = (name: string): string | undefined => {
    const v = env[name];
    return v === undefined || v.trim() === '' ? undefined : v;
  };
  /** The variable's value, or `undefined` (with a warning saying what applies) when unreadable. */
  const read = <T>(name: string, parse: Parse<T>, instead: string): T | undefined => {
    const text = given(name);
    if (text === undefined) return undefined;
    const value = parse(text);
    if (!(value instanceof Invalid)) return value;
    warn(`queue-otel: environment variable ${name} must be ${value.expected}, got ${JSON.stringify(text.length > 80 ? `${text.slice(0, 80)}…` : text)}; ${instead}`);
    return undefined;
  };

  const options: Record<string, unknown> = {};
  for (const [option, variable] of Object.entries(OPTION_VARIABLES)) {
    if (!variable.parse) continue;
    const value = read(variable.name, variable.parse, fallback(option));
    if (value !== undefined) options[option] = value;
  }
  const hooks = given('QUEUE_OTEL_HOOKS');
  if (hooks !== undefined) Object.assign(options, loadHooks(hooks, cwd, warn));
  // The parsers above already hold each value to what the option accepts; this is the same
  // check the constructor makes, so that the two cannot drift apart.
  const instrumentation = validOptions(options, warn);

  const port = read('QUEUE_OTEL_DASHBOARD_PORT', PORT, 'the dashboard is off');
  const host = given('QUEUE_OTEL_DASHBOARD_HOST');
  if (host !== undefined && given('QUEUE_OTEL_DASHBOARD_PORT') === undefined) {
    warn('queue-otel: QUEUE_OTEL_DASHBOARD_HOST is set but QUEUE_OTEL_DASHBOARD_PORT is not; the port turns the dashboard on, so it is off');
  }
  return {
    instrumentation,
    dashboard: port === undefined ? undefined : { port, host: host?.trim() ?? '127.0.0.1' },
    esmHook: read('QUEUE_OTEL_ESM_HOOK', boolean, 'using the default, true') ?? true,
    shutdownTimeoutMs:
      read('QUEUE_OTEL_SHUTDOWN_TIMEOUT', MILLISECONDS, `using the default, ${DEFAULT_SHUTDOWN_TIMEOUT_MS}`) ?? DEFAULT_SHUTDOWN_TIMEOUT_MS,
  };
}

/**
 * Loads the module QUEUE_OTEL_HOOKS names and takes its `processHook` / `sendHook` exports; a
 * module that cannot be loaded, or exports neither, is reported and no hook applies.
 */
function loadHooks(text: string, cwd: string, warn: ConfigWarn): Pick<QueueInstrumentationConfig, 'processHook' | 'sendHook'> {
  const name = 'QUEUE_OTEL_HOOKS';
  const path = isAbsolute(text.trim()) ? text.trim() : resolve(cwd, text.trim());
  let loaded: Record<string, unknown>;
  try {
    // require() loads CommonJS, and ES modules without top-level await (Node >= 22.12).
    loaded = createRequire(pathToFileURL(resolve(cwd, 'noop.js')))(path) as Record<string, unknown>;
  } catch (error) {
    warn(`queue-otel: environment variable ${name}: could not load ${path} (${firstLine(error)}); no hooks apply`);
    return {};
  }
  const source = (loaded && typeof loaded === 'object' && 'default' in loaded && !('processHook' in loaded) && !('sendHook' in loaded)
    ? (loaded.default as Record<string, unknown>)
    : loaded) ?? {};
  const hooks: Pick<QueueInstrumentationConfig, 'processHook' | 'sendHook'> = {};
  for (const key of ['processHook', 'sendHook'] as const) {
    const value = source[key];
    if (value === undefined) continue;
    if (typeof value !== 'function') {
      warn(`queue-otel: environment variable ${name} must be a module whose ${key} export is a function, got ${JSON.stringify(text)}; ${key} ignored`);
      continue;
    }
    hooks[key] = value as never;
  }
  if (hooks.processHook === undefined && hooks.sendHook === undefined && !('processHook' in source) && !('sendHook' in source)) {
    warn(`queue-otel: environment variable ${name} must be a module that exports processHook and/or sendHook functions, got ${JSON.stringify(text)}; no hooks apply`);
  }
  return hooks;
}

function firstLine(error: unknown): string {
  return String(error instanceof Error ? error.message : error).split('\n')[0] ?? '';
}
