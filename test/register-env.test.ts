// QUEUE_OTEL_* variables onto options, and the metric exporter variables register reads itself.
import { describe, expect, it } from 'vitest';
import { KNOWN_VARIABLES, readSettings } from '../src/register/env.js';
import { metricExporterNames } from '../src/register/metric-readers.js';
import { ROOT } from './helpers/processes.js';

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
    expect(readSettings({ PATH: '/bin', OTEL_SERVICE_NAME: 'x', QUEUE_OTEL_JOB_CPU: '' })).toEqual({
      instrumentation: {},
      dashboard: undefined,
      esmHook: true,
    });
  });

  it('turns the dashboard on with a port, on loopback unless a host is given', () => {
    expect(readSettings({ QUEUE_OTEL_DASHBOARD_PORT: '9465' }).dashboard).toEqual({ port: 9465, host: '127.0.0.1' });
    expect(readSettings({ QUEUE_OTEL_DASHBOARD_PORT: '0', QUEUE_OTEL_DASHBOARD_HOST: '0.0.0.0' }).dashboard).toEqual({ port: 0, host: '0.0.0.0' });
  });

  it.each([
    ['QUEUE_OTEL_MAX_JOB_NAMES_PER_QUEUE', '-3', /QUEUE_OTEL_MAX_JOB_NAMES_PER_QUEUE must be an integer >= 1, got "-3"/],
    ['QUEUE_OTEL_MAX_JOB_NAMES_PER_QUEUE', '2.5', /QUEUE_OTEL_MAX_JOB_NAMES_PER_QUEUE must be an integer >= 1/],
    ['QUEUE_OTEL_QUEUE_STATE_INTERVAL', '0', /QUEUE_OTEL_QUEUE_STATE_INTERVAL must be a whole number of milliseconds >= 1, got "0"/],
    ['QUEUE_OTEL_QUEUE_STATE_TIMEOUT', '1s', /QUEUE_OTEL_QUEUE_STATE_TIMEOUT must be a whole number of milliseconds/],
    ['QUEUE_OTEL_QUEUE_STATE_LEADER', '1', /QUEUE_OTEL_QUEUE_STATE_LEADER must be "true" or "false", got "1"/],
    ['QUEUE_OTEL_QUEUES', 'a,,b', /QUEUE_OTEL_QUEUES must be a comma-separated list of queue names/],
    ['QUEUE_OTEL_HOOKS', './does-not-exist.cjs', /QUEUE_OTEL_HOOKS: could not load .*does-not-exist\.cjs/],
    ['QUEUE_OTEL_DASHBOARD_PORT', '70000', /QUEUE_OTEL_DASHBOARD_PORT must be a port number from 0 to 65535/],
    ['QUEUE_OTEL_DASHBOARD_HOST', 'localhost', /QUEUE_OTEL_DASHBOARD_HOST is set but QUEUE_OTEL_DASHBOARD_PORT is not/],
    ['QUEUE_OTEL_ESM_HOOK', 'off', /QUEUE_OTEL_ESM_HOOK must be "true" or "false"/],
    ['QUEUE_OTEL_DASHBOARD', 'true', /unknown environment variable QUEUE_OTEL_DASHBOARD; known: /],
  ])('%s=%s fails naming the variable', (name, value, message) => {
    expect(() => readSettings({ [name]: value }, ROOT)).toThrow(message);
  });

  it('knows the variables the README documents', () => {
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
      'QUEUE_OTEL_QUEUES',
      'QUEUE_OTEL_QUEUE_STATE',
      'QUEUE_OTEL_QUEUE_STATE_INTERVAL',
      'QUEUE_OTEL_QUEUE_STATE_LEADER',
      'QUEUE_OTEL_QUEUE_STATE_TIMEOUT',
      'QUEUE_OTEL_USE_PRODUCER_SPAN_AS_PARENT',
    ]);
  });
});

describe('OTEL_METRICS_EXPORTER', () => {
  it('defaults to otlp as the SDK does; none turns metrics off; a list gives several readers', () => {
    expect(metricExporterNames({})).toEqual(['otlp']);
    expect(metricExporterNames({ OTEL_METRICS_EXPORTER: 'none' })).toEqual([]);
    expect(metricExporterNames({ OTEL_METRICS_EXPORTER: 'Prometheus, console' })).toEqual(['prometheus', 'console']);
    expect(() => metricExporterNames({ OTEL_METRICS_EXPORTER: 'logging' })).toThrow(/OTEL_METRICS_EXPORTER must be a comma-separated list of otlp, prometheus, console, none, got "logging"/);
  });
});
