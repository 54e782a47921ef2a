// Where queue-otel's messages go and what they say: configuration warnings (through diag, or as a
// Node.js warning before any diag logger is set), the logger register sets by default (one line
// for an exporter endpoint that does not answer, at most once a minute; no SDK noise), and the
// Node.js version register needs.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DiagLogLevel, type DiagLogger, diag } from '@opentelemetry/api';
import { describe, expect, it } from 'vitest';
import { warnConfig } from '../src/config.js';
import { RegisterLogger, UNREACHABLE_REPEAT_MS } from '../src/register/logger.js';
import { MIN_NODE_VERSION, nodeTooOld, nodeTooOldMessage } from '../src/register/node-version.js';
import { otlpEndpoints } from '../src/register/otlp-endpoints.js';
import { ROOT } from './helpers/processes.js';

/** What OpenTelemetry's global error handler logs for a failed OTLP/HTTP export (JSON.stringify of the flattened error). */
const REFUSED = JSON.stringify({
  stack: 'Error: connect ECONNREFUSED 127.0.0.1:4318\n    at TCPConnectWrap.afterConnect [as oncomplete] (node:net:2021:16)',
  message: 'connect ECONNREFUSED 127.0.0.1:4318',
  errno: '-111',
  code: 'ECONNREFUSED',
  syscall: 'connect',
  address: '127.0.0.1',
  port: '4318',
  name: 'Error',
});

function recording() {
  const console: Record<keyof DiagLogger, string[]> = { error: [], warn: [], info: [], debug: [], verbose: [] };
  const sink = Object.fromEntries(
    Object.keys(console).map((level) => [level, (...args: unknown[]) => console[level as keyof DiagLogger].push(args.map(String).join(' '))]),
  ) as unknown as DiagLogger;
  const lines: string[] = [];
  let now = 1_000_000;
  return { console, sink, lines, write: (line: string) => lines.push(line), clock: { now: () => now, advance: (ms: number) => (now += ms) } };
}

describe('configuration warnings', () => {
  it('before any diag logger is set, a bad option is printed as a Node.js warning, once', () => {
    // In a child process, as a user sees it: instrumentations are usually built before the SDK
    // (which sets the diag logger, if at all) is.
    const code = [
      "const { BullMQInstrumentation, BullInstrumentation } = require('./dist/cjs/index.js');",
      'new BullMQInstrumentation({ enabled: false, queueStateTimeout: -5 });',
      'new BullInstrumentation({ enabled: false, queueStateTimeout: -5 });',
      "console.log('STILL_RUNNING');",
    ].join('\n');
    const r = spawnSync(process.execPath, ['-e', code], { cwd: ROOT, encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stdout).toBe('STILL_RUNNING\n');
    const lines = r.stderr.split('\n').filter((l) => l.includes('queue-otel'));
    expect(lines).toEqual([
      expect.stringMatching(
        /^\(node:\d+\) \[QUEUE_OTEL_CONFIG\] Warning: queue-otel: option "queueStateTimeout" must be a whole number of milliseconds >= 1, got -5; using the default, 1000$/,
      ),
    ]);
  });

  it('once a diag logger is set, it goes through diag at warn level', async () => {
    const r = recording();
    diag.setLogger(r.sink, DiagLogLevel.WARN);
    const processWarnings: unknown[] = [];
    const listener = (w: Error) => processWarnings.push(w);
    process.on('warning', listener);
    try {
      warnConfig('queue-otel: a test warning');
      warnConfig('queue-otel: a test warning');
      await new Promise((r2) => setImmediate(r2));
      expect(r.console.warn).toEqual(['queue-otel: a test warning']);
      expect(processWarnings).toEqual([]);
    } finally {
      process.off('warning', listener);
      diag.disable();
    }
  });
});

describe('the logger register sets', () => {
  it('turns a refused OTLP export into one line naming the endpoint and the variables, at most once a minute', () => {
    const r = recording();
    const logger = new RegisterLogger({}, { write: r.write, console: r.sink, now: r.clock.now });
    logger.error(REFUSED);
    r.clock.advance(5_000);
    logger.error(REFUSED);
    expect(r.lines).toEqual([
      'queue-otel: nothing answers at http://localhost:4318 (ECONNREFUSED 127.0.0.1:4318): traces and metrics are not exported. ' +
        'Start an OpenTelemetry Collector there, set OTEL_EXPORTER_OTLP_ENDPOINT to yours, or set OTEL_TRACES_EXPORTER=none and ' +
        'OTEL_METRICS_EXPORTER=none (at most once a minute)',
    ]);
    r.clock.advance(UNREACHABLE_REPEAT_MS);
    logger.error(REFUSED);
    expect(r.lines).toHaveLength(2);
    expect(r.console.error).toEqual([]);
  });

  it('names only the signals sent to the endpoint that failed', () => {
    const r = recording();
    const env = { OTEL_METRICS_EXPORTER: 'prometheus', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://127.0.0.1:4318/v1/traces' };
    new RegisterLogger(env, { write: r.write, console: r.sink, now: r.clock.now }).error(REFUSED);
    expect(r.lines).toEqual([
      'queue-otel: nothing answers at http://127.0.0.1:4318/v1/traces (ECONNREFUSED 127.0.0.1:4318): traces are not exported. ' +
        'Start an OpenTelemetry Collector there, set OTEL_EXPORTER_OTLP_ENDPOINT to yours, or set OTEL_TRACES_EXPORTER=none (at most once a minute)',
    ]);
  });

  it('drops the resource messages nobody can act on and the wrong NodeSDK line for OTEL_TRACES_EXPORTER=none, keeps warnings and other errors as they are', () => {
    const r = recording();
    const logger = new RegisterLogger({}, { write: r.write, console: r.sink, now: r.clock.now });
    logger.error('Accessing resource attributes before async attributes settled');
    logger.warn('dropping invalid resource attribute value for key "azure.vm.scaleset.name"');
    logger.warn('OTEL_TRACES_EXPORTER contains "none". SDK will not be initialized.');
    logger.warn('Unrecognized OTEL_TRACES_EXPORTER value: zipkin2.');
    logger.warn('queue-otel/bullmq', 'queue "emails": more than 100 job names; the others are counted as _OTHER');
    // A queue-otel message about Redis is not an exporter's: it passes unchanged.
    logger.error('queue-otel/bullmq', 'state read failed: connect ECONNREFUSED 127.0.0.1:6379');
    logger.error('{"message":"Unexpected token"}');
    logger.warn('queue-otel/bullmq', 'queue state of "emails" not read', new Error('no answer within 1000 ms'));
    expect(r.lines).toEqual([]);
    expect(r.console.warn).toEqual([
      'Unrecognized OTEL_TRACES_EXPORTER value: zipkin2.',
      'queue-otel/bullmq queue "emails": more than 100 job names; the others are counted as _OTHER',
      'queue-otel/bullmq queue state of "emails" not read Error: no answer within 1000 ms', // one line, no stack
    ]);
    expect(r.console.error).toEqual(['queue-otel/bullmq state read failed: connect ECONNREFUSED 127.0.0.1:6379', '{"message":"Unexpected token"}']);
  });

  it('knows where each signal goes, by the same variables and defaults as the exporters', () => {
    expect(otlpEndpoints({})).toEqual([
      { signal: 'traces', exporterVariable: 'OTEL_TRACES_EXPORTER', url: 'http://localhost:4318/v1/traces' },
      { signal: 'metrics', exporterVariable: 'OTEL_METRICS_EXPORTER', url: 'http://localhost:4318/v1/metrics' },
    ]);
    expect(otlpEndpoints({ OTEL_EXPORTER_OTLP_ENDPOINT: 'https://otlp.example:443/', OTEL_LOGS_EXPORTER: 'otlp', OTEL_METRICS_EXPORTER: 'none' })).toEqual([
      { signal: 'traces', exporterVariable: 'OTEL_TRACES_EXPORTER', url: 'https://otlp.example:443/v1/traces' },
      { signal: 'logs', exporterVariable: 'OTEL_LOGS_EXPORTER', url: 'https://otlp.example:443/v1/logs' },
    ]);
    expect(otlpEndpoints({ OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc', OTEL_TRACES_EXPORTER: 'console' })).toEqual([
      { signal: 'metrics', exporterVariable: 'OTEL_METRICS_EXPORTER', url: 'http://localhost:4317' },
    ]);
  });
});

describe('Node.js version', () => {
  it('register needs the version package.json declares', () => {
    const engines = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { engines: { node: string } }).engines.node;
    expect(engines).toBe(`>=${MIN_NODE_VERSION}`);
  });

  it.each([
    ['20.20.2', true],
    ['22.14.0', true],
    ['22.15.0', false],
    ['22.16.1', false],
    ['23.0.0', false],
    ['24.21.0', false],
  ])('%s too old: %s', (version, old) => {
    expect(nodeTooOld(version)).toBe(old);
  });

  it('says what is needed in one line', () => {
    expect(nodeTooOldMessage('20.20.2')).toBe(
      'queue-otel: needs Node.js 22.15.0 or later (22.15+ or 24), this is 20.20.2; OpenTelemetry was not started and the application runs without it',
    );
  });
});
