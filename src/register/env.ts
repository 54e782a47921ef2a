import { createRequire } from 'node:module';
import { isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { type QueueInstrumentationConfig, resolveConfig } from '../config.js';

/** What `queue-otel/register` reads from `QUEUE_OTEL_*` environment variables. */
export interface RegisterSettings {
  /** Options for every queue instrumentation. */
  instrumentation: QueueInstrumentationConfig;
  /** The live dashboard, when `QUEUE_OTEL_DASHBOARD_PORT` is set. */
  dashboard: { port: number; host: string } | undefined;
  /** Whether register adds OpenTelemetry's ESM loader hook (`QUEUE_OTEL_ESM_HOOK`). */
  esmHook: boolean;
}

type Env = Readonly<Record<string, string | undefined>>;

/** A parser of one variable's text; returns the value or throws a message of what was expected. */
type Parse<T> = (text: string, name: string) => T;

class EnvError extends TypeError {}

const fail = (name: string, expected: string, text: string): never => {
  throw new EnvError(`queue-otel: environment variable ${name} must be ${expected}, got ${JSON.stringify(text)}`);
};

const boolean: Parse<boolean> = (text, name) => {
  const t = text.trim().toLowerCase();
  if (t === 'true') return true;
  if (t === 'false') return false;
  return fail(name, '"true" or "false"', text);
};

const integer = (min: number, what: string): Parse<number> => (text, name) => {
  const t = text.trim();
  const n = /^\d+$/.test(t) ? Number(t) : NaN;
  if (!Number.isSafeInteger(n) || n < min) fail(name, what, text);
  return n;
};

const list: Parse<string[]> = (text, name) => {
  const items = text.split(',').map((s) => s.trim());
  if (items.some((s) => s === '')) fail(name, 'a comma-separated list of queue names', text);
  return items;
};

/**
 * Every option of {@link QueueInstrumentationConfig}, each with its variable. A `Record` over the
 * option keys: adding an option to the config without a variable here fails to compile.
 */
const OPTION_VARIABLES: Record<keyof QueueInstrumentationConfig, { name: string; parse?: Parse<unknown> }> = {
  enabled: { name: 'QUEUE_OTEL_ENABLED', parse: boolean },
  maxJobNamesPerQueue: { name: 'QUEUE_OTEL_MAX_JOB_NAMES_PER_QUEUE', parse: integer(1, 'an integer >= 1') },
  useProducerSpanAsParent: { name: 'QUEUE_OTEL_USE_PRODUCER_SPAN_AS_PARENT', parse: boolean },
  // Functions cannot be written in a variable: both come from the module QUEUE_OTEL_HOOKS names.
  processHook: { name: 'QUEUE_OTEL_HOOKS' },
  sendHook: { name: 'QUEUE_OTEL_HOOKS' },
  jobCpu: { name: 'QUEUE_OTEL_JOB_CPU', parse: boolean },
  jobMemory: { name: 'QUEUE_OTEL_JOB_MEMORY', parse: boolean },
  queueState: { name: 'QUEUE_OTEL_QUEUE_STATE', parse: boolean },
  queueStateInterval: { name: 'QUEUE_OTEL_QUEUE_STATE_INTERVAL', parse: integer(1, 'a whole number of milliseconds >= 1') },
  queueStateTimeout: { name: 'QUEUE_OTEL_QUEUE_STATE_TIMEOUT', parse: integer(1, 'a whole number of milliseconds >= 1') },
  queueStateLeader: { name: 'QUEUE_OTEL_QUEUE_STATE_LEADER', parse: boolean },
  queues: { name: 'QUEUE_OTEL_QUEUES', parse: list },
  maxQueues: { name: 'QUEUE_OTEL_MAX_QUEUES', parse: integer(1, 'an integer >= 1') },
  maxErrorTypesPerQueue: { name: 'QUEUE_OTEL_MAX_ERROR_TYPES_PER_QUEUE', parse: integer(1, 'an integer >= 1') },
  maxNameLength: { name: 'QUEUE_OTEL_MAX_NAME_LENGTH', parse: integer(1, 'an integer >= 1') },
  cardinalityLimit: { name: 'QUEUE_OTEL_CARDINALITY_LIMIT', parse: integer(1, 'an integer >= 1') },
  createSpans: { name: 'QUEUE_OTEL_CREATE_SPANS', parse: boolean },
};

/** Variables of register itself, not options of the instrumentations. */
const REGISTER_VARIABLES = ['QUEUE_OTEL_DASHBOARD_PORT', 'QUEUE_OTEL_DASHBOARD_HOST', 'QUEUE_OTEL_ESM_HOOK'] as const;

/** Every `QUEUE_OTEL_*` variable register understands (the README documents each). */
export const KNOWN_VARIABLES: readonly string[] = [
  ...new Set([...Object.values(OPTION_VARIABLES).map((v) => v.name), ...REGISTER_VARIABLES]),
];

/**
 * Reads `QUEUE_OTEL_*` from `env`. Throws a `TypeError` naming the variable and what it expected
 * for a wrong value, or an unknown `QUEUE_OTEL_` variable (a typo would otherwise do nothing).
 * `cwd` is where a relative `QUEUE_OTEL_HOOKS` path is resolved from.
 */
export function readSettings(env: Env, cwd = process.cwd()): RegisterSettings {
  for (const key of Object.keys(env)) {
    if (key.startsWith('QUEUE_OTEL_') && !KNOWN_VARIABLES.includes(key) && env[key] !== undefined) {
      throw new EnvError(`queue-otel: unknown environment variable ${key}; known: ${KNOWN_VARIABLES.join(', ')}`);
    }
  }
  const given = (name: string): string | undefined => {
    const v = env[name];
    return v === undefined || v.trim() === '' ? undefined : v;
  };

  const options: Record<string, unknown> = {};
  for (const [option, variable] of Object.entries(OPTION_VARIABLES)) {
    const text = given(variable.name);
    if (text !== undefined && variable.parse) options[option] = variable.parse(text, variable.name);
  }
  const hooks = given('QUEUE_OTEL_HOOKS');
  if (hooks !== undefined) Object.assign(options, loadHooks(hooks, cwd));
  // The same validation as the constructor, reported under the variable's name.
  try {
    resolveConfig(options);
  } catch (error) {
    const option = /option "([^"]+)"/.exec(String((error as Error).message))?.[1];
    const variable = option ? OPTION_VARIABLES[option as keyof QueueInstrumentationConfig]?.name : undefined;
    throw new EnvError(variable ? `${(error as Error).message} (from ${variable})` : (error as Error).message);
  }

  const port = given('QUEUE_OTEL_DASHBOARD_PORT');
  const host = given('QUEUE_OTEL_DASHBOARD_HOST');
  if (host !== undefined && port === undefined) {
    throw new EnvError('queue-otel: QUEUE_OTEL_DASHBOARD_HOST is set but QUEUE_OTEL_DASHBOARD_PORT is not; the port turns the dashboard on');
  }
  const dashboard =
    port === undefined
      ? undefined
      : {
          port: (() => {
            const n = integer(0, 'a port number from 0 to 65535 (0: any free port)')(port, 'QUEUE_OTEL_DASHBOARD_PORT');
            return n <= 65535 ? n : fail('QUEUE_OTEL_DASHBOARD_PORT', 'a port number from 0 to 65535 (0: any free port)', port);
          })(),
          host: host?.trim() ?? '127.0.0.1',
        };
  const esm = given('QUEUE_OTEL_ESM_HOOK');
  return {
    instrumentation: options as QueueInstrumentationConfig,
    dashboard,
    esmHook: esm === undefined ? true : boolean(esm, 'QUEUE_OTEL_ESM_HOOK'),
  };
}

/** Loads the module QUEUE_OTEL_HOOKS names and takes its `processHook` / `sendHook` exports. */
function loadHooks(text: string, cwd: string): Pick<QueueInstrumentationConfig, 'processHook' | 'sendHook'> {
  const name = 'QUEUE_OTEL_HOOKS';
  const path = isAbsolute(text.trim()) ? text.trim() : resolve(cwd, text.trim());
  let loaded: Record<string, unknown>;
  try {
    // require() loads CommonJS, and ES modules without top-level await (Node >= 22.12).
    loaded = createRequire(pathToFileURL(resolve(cwd, 'noop.js')))(path) as Record<string, unknown>;
  } catch (error) {
    throw new EnvError(`queue-otel: environment variable ${name}: could not load ${path}: ${(error as Error).message}`);
  }
  const source = (loaded && typeof loaded === 'object' && 'default' in loaded && !('processHook' in loaded) && !('sendHook' in loaded)
    ? (loaded.default as Record<string, unknown>)
    : loaded) ?? {};
  const hooks: Pick<QueueInstrumentationConfig, 'processHook' | 'sendHook'> = {};
  for (const key of ['processHook', 'sendHook'] as const) {
    const value = source[key];
    if (value === undefined) continue;
    if (typeof value !== 'function') fail(name, `a module whose ${key} export is a function`, text);
    hooks[key] = value as never;
  }
  if (hooks.processHook === undefined && hooks.sendHook === undefined) {
    fail(name, 'a module that exports processHook and/or sendHook functions', text);
  }
  return hooks;
}
