// QUEUE_OTEL_* variables onto options, and the metric exporter variables register reads itself.
// A variable that cannot be used never stops the application: it is reported once, naming it and
// what it expected, and its default applies.
import { describe, expect, it } from 'vitest';
import { DEFAULT_SHUTDOWN_TIMEOUT_MS, KNOWN_VARIABLES, readSettings } from '../src/register/env.js';
import { metricExporterNames, metricReadersFromEnv } from '../src/register/metric-readers.js';
import { ROOT } from './helpers/processes.js';

/** readSettings with its warnings collected. */
function settingsOf(env: Record<string, string>) {
  const warnings: string[] = [];
  const settings = readSettings(env, ROOT, (m) => warnings.push(m));
  return { settings, warnings };
}

const DEFAULT_SETTINGS = { instrumentation: {}, dashboard: undefined, esmHook: true, shutdownTimeoutMs: DEFAULT_SHUTDOWN_TIMEOUT_MS };

describe('readSettings', () => {
  it('maps a variable onto every option of QueueInstrumentationConfig', () => {
    const settings = readSettings(
      {
        QUEUE_OTEL_ENABLED: 'false',
        QUEUE_OTEL_MAX_JOB_NAMES_PER_QUEUE: '250',
        QUEUE_OTEL_USE_PRODUCER_SPAN_AS_PARENT: 'TRUE',
        QUEUE_OTEL_HOOKS: 'test/fixtures/register/hooks.cjs',
        QUEUE_OTEL_JOB_CPU: 'false',
        QUEUE_OTEL_JOB_MEMORY: 'true',
        QUEUE_OTEL_QUEUE_STATE: 'false',
        QUEUE_OTEL_QUEUE_STATE_INTERVAL: '5000',
        QUEUE_OTEL_QUEUE_STATE_TIMEOUT: '250',
        QUEUE_OTEL_QUEUE_STATE_LEADER: 'false',
        QUEUE_OTEL_QUEUES: 'emails, reports',
      },
      ROOT,
    );
    const { processHook, ...rest } = settings.instrumentation;
    expect(typeof processHook).toBe('function');
    expect(rest).toEqual({
      enabled: false,
      maxJobNamesPerQueue: 250,
      useProducerSpanAsParent: true,
      jobCpu: false,
      jobMemory: true,
      queueState: false,
      queueStateInterval: 5000,
      queueStateTimeout: 250,
      queueStateLeader: false,
      queues: ['emails', 'reports'],
    });
    expect(settings.dashboard).toBeUndefined();
    expect(settings.esmHook).toBe(true);
  });

  it('leaves every option at its default when nothing is set, and ignores other variables', () => {
    const { settings, warnings } = settingsOf({ PATH: '/bin', OTEL_SERVICE_NAME: 'x', QUEUE_OTEL_JOB_CPU: '' });
    expect(settings).toEqual(DEFAULT_SETTINGS);
    expect(warnings).toEqual([]);
  });

  it('bounds the flush at shutdown to 1.5 s by default (under the 2 s a stop allows), QUEUE_OTEL_SHUTDOWN_TIMEOUT to change it', () => {
    expect(DEFAULT_SHUTDOWN_TIMEOUT_MS).toBe(1500);
    expect(settingsOf({}).settings.shutdownTimeoutMs).toBe(1500);
    expect(settingsOf({ QUEUE_OTEL_SHUTDOWN_TIMEOUT: '10000' }).settings.shutdownTimeoutMs).toBe(10_000);
  });

  it('turns the dashboard on with a port, on loopback unless a host is given', () => {
    expect(readSettings({ QUEUE_OTEL_DASHBOARD_PORT: '9465' }).dashboard).toEqual({ port: 9465, host: '127.0.0.1' });
    expect(readSettings({ QUEUE_OTEL_DASHBOARD_PORT: '0', QUEUE_OTEL_DASHBOARD_HOST: '0.0.0.0' }).dashboard).toEqual({ port: 0, host: '0.0.0.0' });
  });

  it.each([
    ['QUEUE_OTEL_MAX_JOB_NAMES_PER_QUEUE', '-3', /^queue-otel: environment variable QUEUE_OTEL_MAX_JOB_NAMES_PER_QUEUE must be an integer >= 1, got "-3"; using the default, 100$/],
    ['QUEUE_OTEL_MAX_JOB_NAMES_PER_QUEUE', '2.5', /QUEUE_OTEL_MAX_JOB_NAMES_PER_QUEUE must be an integer >= 1, got "2.5"; using the default, 100/],
    ['QUEUE_OTEL_QUEUE_STATE_INTERVAL', '0', /QUEUE_OTEL_QUEUE_STATE_INTERVAL must be a whole number of milliseconds >= 1, got "0"; using the default, 15000/],
    ['QUEUE_OTEL_QUEUE_STATE_TIMEOUT', '1s', /QUEUE_OTEL_QUEUE_STATE_TIMEOUT must be a whole number of milliseconds >= 1, got "1s"; using the default, 1000/],
    ['QUEUE_OTEL_QUEUE_STATE_LEADER', '1', /QUEUE_OTEL_QUEUE_STATE_LEADER must be "true" or "false", got "1"; using the default, true/],
    ['QUEUE_OTEL_QUEUES', 'a,,b', /QUEUE_OTEL_QUEUES must be a comma-separated list of queue names, got "a,,b"; using none/],
    ['QUEUE_OTEL_HOOKS', './does-not-exist.cjs', /QUEUE_OTEL_HOOKS: could not load .*does-not-exist\.cjs \(Cannot find module.*\); no hooks apply/],
    ['QUEUE_OTEL_HOOKS', 'test/fixtures/register/no-hooks.cjs', /QUEUE_OTEL_HOOKS must be a module that exports processHook and\/or sendHook functions, got "test\/fixtures\/register\/no-hooks.cjs"; no hooks apply/],
    ['QUEUE_OTEL_DASHBOARD_PORT', '70000', /QUEUE_OTEL_DASHBOARD_PORT must be a port number from 0 to 65535 \(0: any free port\), got "70000"; the dashboard is off/],
    ['QUEUE_OTEL_DASHBOARD_HOST', 'localhost', /QUEUE_OTEL_DASHBOARD_HOST is set but QUEUE_OTEL_DASHBOARD_PORT is not; the port turns the dashboard on, so it is off/],
    ['QUEUE_OTEL_ESM_HOOK', 'off', /QUEUE_OTEL_ESM_HOOK must be "true" or "false", got "off"; using the default, true/],
    ['QUEUE_OTEL_SHUTDOWN_TIMEOUT', '2s', /QUEUE_OTEL_SHUTDOWN_TIMEOUT must be a whole number of milliseconds >= 1, got "2s"; using the default, 1500/],
    ['QUEUE_OTEL_DASHBOARD', 'true', /^queue-otel: unknown environment variable QUEUE_OTEL_DASHBOARD ignored \(did you mean QUEUE_OTEL_DASHBOARD_PORT\?\); known: QUEUE_OTEL_ENABLED, /],
    ['QUEUE_OTEL_MAX_JOB_NAME', '10', /unknown environment variable QUEUE_OTEL_MAX_JOB_NAME ignored \(did you mean QUEUE_OTEL_MAX_JOB_NAMES_PER_QUEUE\?\)/],
    ['QUEUE_OTEL_FUTURE_OPTION', 'on', /unknown environment variable QUEUE_OTEL_FUTURE_OPTION ignored; known: /],
  ])('%s=%s warns once, naming the variable and what it expected, and the default applies', (name, value, message) => {
    const { settings, warnings } = settingsOf({ [name]: value });
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(message);
    expect(settings).toEqual(DEFAULT_SETTINGS);
  });

  it('keeps the good variables beside a bad one', () => {
    const { settings, warnings } = settingsOf({ QUEUE_OTEL_JOB_CPU: 'yes', QUEUE_OTEL_JOB_MEMORY: 'false', QUEUE_OTEL_QUEUES: 'a' });
    expect(warnings).toHaveLength(1);
    expect(settings.instrumentation).toEqual({ jobMemory: false, queues: ['a'] });
  });

  it('knows the variables docs/configuration.md documents', () => {
    expect([...KNOWN_VARIABLES].sort()).toEqual([
      'QUEUE_OTEL_CARDINALITY_LIMIT',
      'QUEUE_OTEL_CREATE_SPANS',
      'QUEUE_OTEL_DASHBOARD_HOST',
      'QUEUE_OTEL_DASHBOARD_PORT',
      'QUEUE_OTEL_ENABLED',
      'QUEUE_OTEL_ESM_HOOK',
      'QUEUE_OTEL_HOOKS',
      'QUEUE_OTEL_JOB_CPU',
      'QUEUE_OTEL_JOB_MEMORY',
      'QUEUE_OTEL_MAX_ERROR_TYPES_PER_QUEUE',
      'QUEUE_OTEL_MAX_JOB_NAMES_PER_QUEUE',
      'QUEUE_OTEL_MAX_NAME_LENGTH',
      'QUEUE_OTEL_MAX_QUEUES',
      'QUEUE_OTEL_PROFILE_DIRECTORY',
      'QUEUE_OTEL_PROFILE_INTERVAL',
      'QUEUE_OTEL_PROFILE_JOBS',
      'QUEUE_OTEL_QUEUES',
      'QUEUE_OTEL_QUEUE_STATE',
      'QUEUE_OTEL_QUEUE_STATE_INTERVAL',
      'QUEUE_OTEL_QUEUE_STATE_LEADER',
      'QUEUE_OTEL_QUEUE_STATE_TIMEOUT',
      'QUEUE_OTEL_SHUTDOWN_TIMEOUT',
      'QUEUE_OTEL_USE_PRODUCER_SPAN_AS_PARENT',
    ]);
  });
});

describe('OTEL_METRICS_EXPORTER', () => {
  it('defaults to otlp as the SDK does; none turns metrics off; a list gives several readers', () => {
    expect(metricExporterNames({})).toEqual(['otlp']);
    expect(metricExporterNames({ OTEL_METRICS_EXPORTER: 'none' })).toEqual([]);
    expect(metricExporterNames({ OTEL_METRICS_EXPORTER: 'Prometheus, console' })).toEqual(['prometheus', 'console']);
  });

  it('leaves an unknown exporter out with a warning, as NodeSDK does for traces', () => {
    const warnings: string[] = [];
    expect(metricExporterNames({ OTEL_METRICS_EXPORTER: 'prometheus,statsd' }, (m) => warnings.push(m))).toEqual(['prometheus']);
    expect(metricExporterNames({ OTEL_METRICS_EXPORTER: 'logging' }, (m) => warnings.push(m))).toEqual([]);
    expect(warnings).toEqual([
      'queue-otel: environment variable OTEL_METRICS_EXPORTER must be a comma-separated list of otlp, prometheus, console, none, got "prometheus,statsd"; "statsd" ignored',
      'queue-otel: environment variable OTEL_METRICS_EXPORTER must be a comma-separated list of otlp, prometheus, console, none, got "logging"; "logging" ignored',
    ]);
  });

  it.each([
    [{ OTEL_EXPORTER_OTLP_PROTOCOL: 'http' }, 'OTEL_EXPORTER_OTLP_PROTOCOL must be http/protobuf, http/json, grpc, got "http"; using http/protobuf for metrics', '@opentelemetry/exporter-metrics-otlp-proto'],
    [{ OTEL_METRIC_EXPORT_INTERVAL: '5s' }, 'OTEL_METRIC_EXPORT_INTERVAL must be a whole number of milliseconds >= 1, got "5s"; using the default, 60000', '@opentelemetry/exporter-metrics-otlp-proto'],
    [{ OTEL_METRICS_EXPORTER: 'prometheus', OTEL_EXPORTER_PROMETHEUS_PORT: 'http' }, 'OTEL_EXPORTER_PROMETHEUS_PORT must be a port number, got "http"; using the default, 9464', '@opentelemetry/exporter-prometheus'],
  ])('%o builds the default reader and warns', (env, message, exporterPackage) => {
    const warnings: string[] = [];
    const loaded: string[] = [];
    const options: unknown[] = [];
    class Fake {
      constructor(o?: unknown) {
        options.push(o);
      }
    }
    const load = (id: string) => {
      loaded.push(id);
      return { PeriodicExportingMetricReader: Fake, ConsoleMetricExporter: Fake, OTLPMetricExporter: Fake, PrometheusExporter: Fake };
    };
    expect(metricReadersFromEnv(env, load, (m) => warnings.push(m))).toHaveLength(1);
    expect(warnings).toEqual([`queue-otel: environment variable ${message}`]);
    expect(loaded).toContain(exporterPackage);
    if (exporterPackage === '@opentelemetry/exporter-prometheus') expect(options).toContainEqual({ host: undefined, port: undefined });
    else expect(options).toContainEqual(expect.objectContaining({ exportIntervalMillis: 60_000 }));
  });
});
