import { createRequire } from 'node:module';
import * as nodeModule from 'node:module';
import { isMainThread } from 'node:worker_threads';
import { DiagLogLevel, diag, metrics, trace } from '@opentelemetry/api';
import { type Instrumentation, registerInstrumentations } from '@opentelemetry/instrumentation';
import { type Dashboard, type MetricReaderClass, createDashboard } from '../dashboard/server.js';
import { getQueueInstrumentations } from '../instrumentations/all.js';
import { selfUrl } from '../self-url.js';
import { type ConfigWarn, warnConfig } from '../config.js';
import { readSettings } from './env.js';
import { RegisterLogger } from './logger.js';
import { metricReadersFromEnv } from './metric-readers.js';
import { nodeTooOld, nodeTooOldMessage } from './node-version.js';
import { installShutdown } from './shutdown.js';

type Env = Readonly<Record<string, string | undefined>>;

/** What one process's register did; kept on globalThis so the CJS and ESM builds share it. */
interface RegisterState {
  mode: 'sdk' | 'attached' | 'disabled';
  dashboard: Dashboard | undefined;
  shutdown: () => Promise<void>;
}

const STATE = Symbol.for('queue-otel.register');
// Where @opentelemetry/api keeps the global providers of every api copy of major version 1: a
// `trace` or `metrics` entry exists once some SDK registered one.
const OTEL_API_GLOBAL = Symbol.for('opentelemetry.js.api.1');

const SDK_MISSING =
  'queue-otel/register needs @opentelemetry/sdk-node, which is not installed: ' +
  'npm install @opentelemetry/sdk-node (0.2xx in an OpenTelemetry JS 2.x project, 0.30x in a 3.x one); ' +
  'OpenTelemetry was not started and the application runs without it';

const OFF: Omit<RegisterState, 'mode'> = { dashboard: undefined, shutdown: async () => {} };

/** A line register must get across whatever the log level: it is why there is no telemetry. */
function say(line: string): void {
  process.stderr.write(`${line}\n`);
}

/** The state of register in this process, if it ran. */
export function registerState(): RegisterState | undefined {
  return (globalThis as Record<symbol, RegisterState | undefined>)[STATE];
}

/**
 * Starts OpenTelemetry with every queue instrumentation, configured by environment variables.
 * Runs once per process (a second load, e.g. the ESM build after the CommonJS one, does nothing).
 * Never throws: a setting that cannot be used is reported, naming the variable, and its default
 * applies; without what it needs (Node.js 22.15, @opentelemetry/sdk-node) it says so in one line
 * and starts nothing, and the application runs as it would without it.
 */
export function startFromEnvironment(env: Env = process.env): RegisterState {
  const existing = registerState();
  if (existing !== undefined) return existing;
  let state: RegisterState;
  try {
    state = start(env);
  } catch (error) {
    // Whatever went wrong setting telemetry up must not stop the application from starting.
    say(`queue-otel: could not start OpenTelemetry (${String(error instanceof Error ? error.message : error).split('\n')[0]}); the application runs without it`);
    state = { mode: 'disabled', ...OFF };
  }
  (globalThis as Record<symbol, RegisterState | undefined>)[STATE] = state;
  return state;
}

function start(env: Env): RegisterState {
  if (/^true$/i.test(env.OTEL_SDK_DISABLED?.trim() ?? '')) return { mode: 'disabled', ...OFF };
  if (!isMainThread || isQueueSandbox()) {
    // Preload flags reach worker threads and BullMQ's sandbox processes (they inherit execArgv).
    // The main process already makes the spans and metrics of sandboxed jobs (and reports the
    // settings); a second SDK here would only duplicate them and fight over the ports.
    return { mode: 'disabled', ...OFF };
  }
  if (nodeTooOld()) {
    say(nodeTooOldMessage());
    return { mode: 'disabled', ...OFF };
  }
  // Warnings and errors a user can act on, one line each (see RegisterLogger), unless
  // OTEL_LOG_LEVEL asks for another level: NodeSDK then sets its own console logger, when it is
  // constructed. Until then the settings' warnings wait, so that they go through that one.
  const levelGiven = (env.OTEL_LOG_LEVEL?.trim() ?? '') !== '';
  if (!levelGiven && !diagLoggerSet()) {
    diag.setLogger(new RegisterLogger(env), { logLevel: DiagLogLevel.WARN, suppressOverrideMessage: true });
  }
  const pending: string[] = [];
  const warn: ConfigWarn = levelGiven ? (message) => pending.push(message) : warnConfig;
  const reportPending = () => pending.splice(0).forEach((message) => warnConfig(message));

  const settings = readSettings(env, process.cwd(), warn);
  const autoLater = autoInstrumentationsRegisterFollows(env);
  const attach = sdkAlreadyRegistered() || autoLater;
  // Without an SDK to join, sdk-node must be there: say so before anything is patched.
  const sdkPath = attach ? undefined : resolveSdkNode();
  if (!attach && sdkPath === undefined) {
    say(SDK_MISSING);
    reportPending();
    return { mode: 'disabled', ...OFF };
  }

  if (settings.esmHook) registerEsmHook(env);
  const instrumentations = getQueueInstrumentations(settings.instrumentation) as unknown as Instrumentation[];

  if (sdkPath === undefined) {
    // Another SDK is (or is about to be) the process's SDK: add the instrumentations to it rather
    // than start a second one. Spans go through the global tracer provider's proxy at once.
    registerInstrumentations({ instrumentations });
    if (autoLater) {
      process.emitWarning(
        'queue-otel/register was loaded before @opentelemetry/auto-instrumentations-node/register; load it after ' +
          '(node --require @opentelemetry/auto-instrumentations-node/register --require queue-otel/register app.js). ' +
          'queue-otel adds its instrumentations to that SDK once it has started.',
        { code: 'QUEUE_OTEL_REGISTER_ORDER' },
      );
      bindMeterProviderWhenRegistered(instrumentations);
    }
    if (settings.dashboard) {
      process.emitWarning(
        'QUEUE_OTEL_DASHBOARD_PORT is ignored: another OpenTelemetry SDK was started in this process, and a metric ' +
          'reader cannot be added to it afterwards. Let queue-otel/register start the SDK to get the dashboard.',
        { code: 'QUEUE_OTEL_DASHBOARD_UNAVAILABLE' },
      );
    }
    reportPending();
    return { mode: 'attached', ...OFF };
  }

  // Exporters and sdk-metrics as the application's sdk-node resolves them: its own dependencies.
  const requireSdk = createRequire(sdkPath);
  const { NodeSDK } = requireSdk(sdkPath) as {
    NodeSDK: new (config: object) => { start(): void; shutdown(): Promise<void> };
  };

  let dashboard: Dashboard | undefined;
  const metricReaders = metricReadersFromEnv(env, requireSdk, warn);
  if (settings.dashboard) {
    const { MetricReader } = requireSdk('@opentelemetry/sdk-metrics') as { MetricReader: MetricReaderClass };
    dashboard = createDashboard(MetricReader, {
      ...settings.dashboard,
      // The service's name comes from the SDK's resource, as the exporters see it.
      queueStateInterval: settings.instrumentation.queueStateInterval,
    });
    metricReaders.push(dashboard.reader);
    dashboard.ready.then(
      (url) => process.stderr.write(`queue-otel: live dashboard on ${url}\n`),
      (error: unknown) => process.stderr.write(`queue-otel: the live dashboard could not start: ${String(error)}\n`),
    );
  }

  const sdk = new NodeSDK({ instrumentations, metricReaders });
  reportPending(); // NodeSDK's constructor has set the logger OTEL_LOG_LEVEL asks for
  sdk.start();

  const flush = async () => {
    const tracerProvider = trace.getTracerProvider() as { getDelegate?: () => unknown };
    const providers = [tracerProvider.getDelegate?.() ?? tracerProvider, metrics.getMeterProvider()];
    await Promise.all(providers.map((p) => (p as { forceFlush?: () => Promise<void> }).forceFlush?.()));
  };
  const shutdown = installShutdown(
    async () => {
      await sdk.shutdown();
      await dashboard?.close();
    },
    flush,
    settings.shutdownTimeoutMs,
  );
  return { mode: 'sdk', dashboard, shutdown };
}

/** Whether this process is one of BullMQ's sandboxed-processor child processes. */
function isQueueSandbox(): boolean {
  return /[\\/]bullmq[\\/]dist[\\/](cjs|esm)[\\/]classes[\\/]main(-worker)?\.js$/.test(process.argv[1] ?? '');
}

/** Where the application's @opentelemetry/sdk-node is, as queue-otel resolves it (undefined: not installed). */
function resolveSdkNode(): string | undefined {
  try {
    return createRequire(selfUrl).resolve('@opentelemetry/sdk-node');
  } catch {
    return undefined;
  }
}

/** Whether some code already set OpenTelemetry's diag logger (register then leaves it alone). */
function diagLoggerSet(): boolean {
  return (globalThis as Record<symbol, Record<string, unknown> | undefined>)[OTEL_API_GLOBAL]?.diag !== undefined;
}

function sdkAlreadyRegistered(): boolean {
  const registry = (globalThis as Record<symbol, Record<string, unknown> | undefined>)[OTEL_API_GLOBAL];
  return registry?.trace !== undefined || registry?.metrics !== undefined;
}

/** Node's own flags and NODE_OPTIONS, where preloads are named. */
function nodeFlags(env: Env): string {
  return [...process.execArgv, env.NODE_OPTIONS ?? ''].join(' ');
}

function autoInstrumentationsRegisterFollows(env: Env): boolean {
  return !sdkAlreadyRegistered() && /auto-instrumentations-node\/register/.test(nodeFlags(env));
}

/**
 * Registers OpenTelemetry's ESM loader hook (import-in-the-middle, as @opentelemetry/instrumentation
 * ships it) so `import` of a queue library is seen, unless the command line already loads it.
 */
function registerEsmHook(env: Env): void {
  const register = (nodeModule as { register?: (specifier: string, parentUrl: string) => void }).register;
  if (typeof register !== 'function') return;
  if (/(instrumentation|import-in-the-middle)\/hook\.mjs/.test(nodeFlags(env))) return;
  try {
    register('@opentelemetry/instrumentation/hook.mjs', selfUrl);
  } catch (error) {
    diag.error('queue-otel: could not register the ESM loader hook; `import` of queue libraries is not instrumented', error);
  }
}

/**
 * When the SDK that queue-otel joins starts after it, its meter provider is set then: poll briefly
 * (preloads all run before the application's first timers fire) and hand it to the instrumentations.
 */
function bindMeterProviderWhenRegistered(instrumentations: Instrumentation[]): void {
  let tries = 0;
  const check = () => {
    const registry = (globalThis as Record<symbol, Record<string, unknown> | undefined>)[OTEL_API_GLOBAL];
    if (registry?.metrics !== undefined) {
      for (const i of instrumentations) i.setMeterProvider(metrics.getMeterProvider());
      return;
    }
    if (++tries < 100) setTimeout(check, 50).unref();
  };
  setImmediate(check).unref();
}
