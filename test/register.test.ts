// Zero-code start, as a user runs it: `node --require queue-otel/register app.js` and
// `node --import queue-otel/register app.mjs`, configured only by environment variables, in child
// processes against the real Redis; what they export is read from a real OTLP/HTTP receiver or
// the real Prometheus endpoint.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { nodeTooOld } from '../src/register/node-version.js';
import { attributes, type Child, type OtlpMetrics, type OtlpReceiver, freePort, startNode, startOtlpReceiver } from './helpers/processes.js';
import { dropSchemas, pgUrl, schemaName } from './helpers/postgres.js';
import { connection, queueName, sleep, until } from './helpers/redis.js';

const require = createRequire(import.meta.url);
const { Queue } = require('bullmq') as typeof import('bullmq');

const CJS_APP = 'test/fixtures/register/app.cjs';

/** A Node.js older than 22.15 on this machine (Debian's own, when the tests run on a newer one), if any. */
const OLD_NODE = (() => {
  const candidates = ['/usr/bin/node', '/usr/local/bin/node', ...(process.env.PATH ?? '').split(':').map((d) => `${d}/node`)];
  for (const path of new Set(candidates)) {
    if (!existsSync(path)) continue;
    const version = spawnSync(path, ['-p', 'process.versions.node'], { encoding: 'utf8' }).stdout?.trim();
    if (version && nodeTooOld(version)) return { path, version };
  }
  return undefined;
})();
const ESM_APP = 'test/fixtures/register/app.mjs';
const POSTGRES_APP = 'test/fixtures/register/postgres-app.mjs';

let receiver: OtlpReceiver;
const children: Child[] = [];
const queues: string[] = [];
const schemas: string[] = [];

beforeAll(async () => {
  receiver = await startOtlpReceiver();
});
afterEach(async () => {
  for (const c of children.splice(0)) {
    c.kill('SIGKILL');
    await c.exited;
  }
  receiver.traces.length = 0;
  receiver.metrics.length = 0;
});
afterAll(async () => {
  await receiver.close();
  await dropSchemas(...schemas);
  for (const name of queues) {
    const q = new Queue(name, { connection: connection() });
    await q.obliterate({ force: true });
    await q.close();
  }
});

function start(args: string[], script: string, env: Record<string, string>): Child {
  const child = startNode(args, script, env);
  children.push(child);
  return child;
}

function queue(label: string): string {
  const name = queueName(label);
  queues.push(name);
  return name;
}

/** OTLP over HTTP/JSON to the receiver; nothing exported before shutdown unless asked. */
function otlp(extra: Record<string, string> = {}): Record<string, string> {
  return {
    OTEL_TRACES_EXPORTER: 'otlp',
    OTEL_METRICS_EXPORTER: 'otlp',
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
    OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
    OTEL_BSP_SCHEDULE_DELAY: '600000',
    OTEL_METRIC_EXPORT_INTERVAL: '600000',
    // Register prints queue-otel's warnings; a state read slower than 1 s on a loaded machine
    // would be one, and these tests assert a stderr free of errors.
    QUEUE_OTEL_QUEUE_STATE_TIMEOUT: '10000',
    ...extra,
  };
}

/** Metrics on a Prometheus endpoint at `port` of loopback, no traces. */
function prometheus(port: number): Record<string, string> {
  return {
    OTEL_TRACES_EXPORTER: 'none',
    OTEL_METRICS_EXPORTER: 'prometheus',
    OTEL_EXPORTER_PROMETHEUS_HOST: '127.0.0.1',
    OTEL_EXPORTER_PROMETHEUS_PORT: String(port),
  };
}

/** Data points of a metric over every export request: value and attributes. */
function metricPoints(requests: OtlpMetrics[], name: string): Array<{ value: number; attributes: Record<string, unknown>; scope: string }> {
  const out: Array<{ value: number; attributes: Record<string, unknown>; scope: string }> = [];
  for (const r of requests) {
    for (const rm of r.resourceMetrics) {
      for (const sm of rm.scopeMetrics) {
        for (const m of sm.metrics) {
          if (m.name !== name) continue;
          const data = (m.sum ?? m.gauge ?? m.histogram) as { dataPoints: Array<Record<string, unknown>> };
          for (const p of data.dataPoints) {
            const value = Number(p.asDouble ?? p.asInt ?? p.count ?? NaN);
            out.push({ value, attributes: attributes(p.attributes as never), scope: sm.scope.name });
          }
        }
      }
    }
  }
  return out;
}

describe('node --require queue-otel/register (CommonJS app)', () => {
  it('starts the SDK from OTEL_* variables, exports spans and metrics over OTLP, and flushes them on SIGTERM before dying by it', async () => {
    const name = queue('reg-cjs');
    const child = start(['--require', 'queue-otel/register'], CJS_APP, {
      QUEUE: name,
      JOBS: 'welcome,receipt',
      FAIL: 'receipt',
      OTEL_SERVICE_NAME: 'qo-register-test',
      ...otlp(),
    });
    await child.waitFor(/JOBS_DONE/);
    await sleep(300);
    // The batch delay and export interval are 10 minutes: nothing has been exported yet.
    expect(receiver.spans().filter((s) => s.name === `process ${name}`)).toHaveLength(0);

    child.kill('SIGTERM');
    expect(await child.exited).toEqual({ code: null, signal: 'SIGTERM' });

    const spans = receiver.spans();
    const process = spans.filter((s) => s.name === `process ${name}`);
    expect(process).toHaveLength(2);
    expect(spans.filter((s) => s.name === `send ${name}`)).toHaveLength(2);
    expect(process[0]!.resource['service.name']).toBe('qo-register-test');
    expect(process.every((s) => s.scope === 'queue-otel/bullmq' && s.kind === 5)).toBe(true); // 5: CONSUMER
    const failed = process.find((s) => attributes(s.attributes)['queue.job.name'] === 'receipt');
    expect(failed?.status?.code).toBe(2); // ERROR

    const ended = metricPoints(receiver.metrics, 'messaging.process.duration').filter((p) => p.attributes['messaging.destination.name'] === name);
    expect(ended.map((p) => [p.attributes['queue.job.name'], p.attributes['queue.job.outcome'], p.value]).sort()).toEqual([
      ['receipt', 'failed', 1],
      ['welcome', 'completed', 1],
    ]);
    const deliveries = metricPoints(receiver.metrics, 'messaging.client.consumed.messages').filter((p) => p.attributes['messaging.destination.name'] === name);
    expect(deliveries.map((p) => [p.attributes['queue.job.name'], p.attributes['messaging.operation.name'], p.value]).sort()).toEqual([
      ['receipt', 'process', 1],
      ['welcome', 'process', 1],
    ]);
    expect(child.stderr()).not.toMatch(/Error/);
  });

  it("keeps the app's own SIGTERM handler in charge: the app exits with its own code, telemetry flushed when its loop drains", async () => {
    const name = queue('reg-handler');
    const child = start(['--require', 'queue-otel/register'], CJS_APP, { QUEUE: name, JOBS: 'a', SIGTERM_HANDLER: 'close', ...otlp() });
    await child.waitFor(/JOBS_DONE/);
    child.kill('SIGTERM');
    expect(await child.exited).toEqual({ code: 0, signal: null });
    expect(child.stdout()).toContain('APP_SIGTERM');
    expect(receiver.spans().filter((s) => s.name === `process ${name}`)).toHaveLength(1);
    expect(metricPoints(receiver.metrics, 'queue.job.busy.time').some((p) => p.attributes['messaging.destination.name'] === name && p.value > 0.04)).toBe(true);
  });

  it('applies QUEUE_OTEL_* options: the job-name cap, producer span as parent, hooks from a module', async () => {
    const name = queue('reg-options');
    const child = start(['--require', 'queue-otel/register'], CJS_APP, {
      QUEUE: name,
      JOBS: 'first,second,third',
      QUEUE_OTEL_MAX_JOB_NAMES_PER_QUEUE: '1',
      QUEUE_OTEL_USE_PRODUCER_SPAN_AS_PARENT: 'true',
      QUEUE_OTEL_HOOKS: 'test/fixtures/register/hooks.cjs',
      QUEUE_OTEL_QUEUE_STATE: 'false',
      ...otlp(),
    });
    await child.waitFor(/JOBS_DONE/);
    await sleep(300); // the 'completed' event comes just before the attempt's span ends
    child.kill('SIGTERM');
    await child.exited;
    const consumed = metricPoints(receiver.metrics, 'messaging.client.consumed.messages').filter(
      (p) => p.attributes['messaging.destination.name'] === name,
    );
    expect(consumed.map((p) => [p.attributes['queue.job.name'], p.value]).sort()).toEqual([
      ['_OTHER', 2],
      ['first', 1],
    ]);
    const spans = receiver.spans();
    const process = spans.filter((s) => s.name === `process ${name}`);
    const sends = new Set(spans.filter((s) => s.name === `send ${name}`).map((s) => s.spanId));
    expect(process).toHaveLength(3);
    expect(process.every((s) => s.parentSpanId !== undefined && sends.has(s.parentSpanId))).toBe(true);
    expect(process.every((s) => attributes(s.attributes)['app.tenant'] === 'world')).toBe(true);
    // queueState off: no depth gauge.
    expect(metricPoints(receiver.metrics, 'queue.job.count')).toHaveLength(0);
  });

  it('exports delta temporality when asked (the Datadog setting), with the same totals', async () => {
    const name = queue('reg-delta');
    const child = start(['--require', 'queue-otel/register'], CJS_APP, {
      QUEUE: name,
      JOBS: 'a,a,a',
      ...otlp({ OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE: 'delta', OTEL_METRIC_EXPORT_INTERVAL: '500' }),
    });
    await child.waitFor(/JOBS_DONE/);
    await sleep(1200);
    child.kill('SIGTERM');
    await child.exited;
    const temporalities = new Set<unknown>();
    for (const r of receiver.metrics) {
      for (const rm of r.resourceMetrics) {
        for (const sm of rm.scopeMetrics) {
          for (const m of sm.metrics) if (m.name === 'messaging.client.consumed.messages') temporalities.add((m.sum as { aggregationTemporality: unknown }).aggregationTemporality);
        }
      }
    }
    expect([...temporalities]).toEqual([1]); // AGGREGATION_TEMPORALITY_DELTA
    const points = metricPoints(receiver.metrics, 'messaging.client.consumed.messages').filter((p) => p.attributes['messaging.destination.name'] === name);
    expect(points.length).toBeGreaterThan(1); // several exports: deltas, not one cumulative value
    expect(points.reduce((sum, p) => sum + p.value, 0)).toBe(3);
  });

  it.each([
    [{ QUEUE_OTEL_MAX_JOB_NAMES_PER_QUEUE: '0' }, /QUEUE_OTEL_MAX_JOB_NAMES_PER_QUEUE must be an integer >= 1, got "0"; using the default, 100/],
    [{ QUEUE_OTEL_JOB_CPU: 'yes' }, /QUEUE_OTEL_JOB_CPU must be "true" or "false", got "yes"; using the default, true/],
    [{ QUEUE_OTEL_MAX_JOB_NAME: '10' }, /unknown environment variable QUEUE_OTEL_MAX_JOB_NAME ignored \(did you mean QUEUE_OTEL_MAX_JOB_NAMES_PER_QUEUE\?\)/],
    [{ QUEUE_OTEL_HOOKS: 'test/fixtures/register/no-hooks.cjs' }, /QUEUE_OTEL_HOOKS must be a module that exports processHook and\/or sendHook functions/],
    [{ QUEUE_OTEL_DASHBOARD_PORT: 'http' }, /QUEUE_OTEL_DASHBOARD_PORT must be a port number from 0 to 65535 \(0: any free port\), got "http"; the dashboard is off/],
    [{ OTEL_METRICS_EXPORTER: 'otlp,statsd' }, /OTEL_METRICS_EXPORTER must be a comma-separated list of otlp, prometheus, console, none, got "otlp,statsd"; "statsd" ignored/],
    [{ OTEL_EXPORTER_OTLP_METRICS_PROTOCOL: 'http' }, /OTEL_EXPORTER_OTLP_METRICS_PROTOCOL must be http\/protobuf, http\/json, grpc, got "http"; using http\/protobuf for metrics/],
  ])('a setting it cannot use never stops the app: one warning naming it, and the jobs are instrumented, for %o', async (env, message) => {
    const name = queue('reg-bad');
    const child = start(['--require', 'queue-otel/register'], CJS_APP, { QUEUE: name, JOBS: 'a', ...otlp(), ...env });
    await child.waitFor(/JOBS_DONE/);
    await sleep(300); // the 'completed' event comes just before the attempt's span ends
    child.kill('SIGTERM');
    expect(await child.exited).toEqual({ code: null, signal: 'SIGTERM' });
    expect(child.stderr().match(new RegExp(message.source, 'g'))).toHaveLength(1);
    expect(child.stderr().split('\n').filter((l) => l.startsWith('queue-otel:'))).toHaveLength(1);
    expect(receiver.spans().filter((s) => s.name === `process ${name}`)).toHaveLength(1);
  });

  it('with OTEL_LOG_LEVEL set, the warning goes through the logger NodeSDK sets at that level', async () => {
    const name = queue('reg-bad-level');
    const child = start(['--require', 'queue-otel/register'], CJS_APP, { QUEUE: name, JOBS: 'a', OTEL_LOG_LEVEL: 'warn', QUEUE_OTEL_JOB_CPU: 'yes', ...otlp() });
    await child.waitFor(/JOBS_DONE/);
    child.kill('SIGTERM');
    await child.exited;
    expect(child.stderr().match(/QUEUE_OTEL_JOB_CPU must be "true" or "false"/g)).toHaveLength(1);
    expect(child.stderr()).not.toMatch(/Current logger will (be overwritten|overwrite)|\[QUEUE_OTEL_CONFIG\]/);
  });
});

describe('a first run with no collector', () => {
  it('says in one line which OTLP endpoint does not answer and how to change or silence it, not a stack per export', async () => {
    const name = queue('reg-no-collector');
    const dead = `http://127.0.0.1:${await freePort()}`; // nothing listens there
    const port = await freePort();
    const child = start(['--require', 'queue-otel/register'], CJS_APP, {
      QUEUE: name,
      JOBS: 'a,b',
      OTEL_EXPORTER_OTLP_ENDPOINT: dead,
      OTEL_METRICS_EXPORTER: 'prometheus',
      OTEL_EXPORTER_PROMETHEUS_HOST: '127.0.0.1',
      OTEL_EXPORTER_PROMETHEUS_PORT: String(port),
      // Exports every 200 ms that give up after 500 ms: several failures within a few seconds.
      OTEL_BSP_SCHEDULE_DELAY: '200',
      OTEL_EXPORTER_OTLP_TIMEOUT: '500',
    });
    // A scrape as early as possible: the SDK's "Accessing resource attributes before async
    // attributes settled" comes from one made before the host detector has answered.
    await until(async () => (await fetch(`http://127.0.0.1:${port}/metrics`).catch(() => undefined))?.ok === true, 20_000, 'the first scrape');
    await child.waitFor(/JOBS_DONE/);
    await child.waitFor(/nothing answers at/, 20_000);
    // More spans, more failed exports: still one line (at most once a minute).
    await sleep(2_000);
    child.kill('SIGTERM');
    expect(await child.exited).toEqual({ code: null, signal: 'SIGTERM' });
    const lines = child.stderr().split('\n').filter((l) => l.trim() !== '');
    expect(lines).toEqual([
      `queue-otel: nothing answers at ${dead}/v1/traces (ECONNREFUSED ${dead.slice('http://'.length)}): traces are not exported. ` +
        'Start an OpenTelemetry Collector there, set OTEL_EXPORTER_OTLP_ENDPOINT to yours, or set OTEL_TRACES_EXPORTER=none (at most once a minute)',
    ]);
  });

  it('on SIGTERM with spans pending for an endpoint that does not answer, flushes for at most 1.5 s and dies by the signal', async () => {
    const name = queue('reg-dead-flush');
    const dead = `http://127.0.0.1:${await freePort()}`;
    const child = start(['--require', 'queue-otel/register'], CJS_APP, {
      QUEUE: name,
      JOBS: 'a,b',
      OTEL_EXPORTER_OTLP_ENDPOINT: dead,
      OTEL_METRICS_EXPORTER: 'none',
      // Nothing exported before the stop: every span is still pending at SIGTERM, and the
      // exporter would retry for its default 10 s.
      OTEL_BSP_SCHEDULE_DELAY: '600000',
    });
    await child.waitFor(/JOBS_DONE/);
    await sleep(300);
    child.kill('SIGTERM');
    expect(await child.exited).toEqual({ code: null, signal: 'SIGTERM' });
    expect(child.stderr().trim()).toBe(
      'queue-otel: the telemetry shutdown did not finish within 1500 ms (QUEUE_OTEL_SHUTDOWN_TIMEOUT); what was not exported by then is lost',
    );
  });
});

describe('on a Node.js older than 22.15', () => {
  it.skipIf(OLD_NODE === undefined)('register says in one line what it needs and starts nothing; the app runs as it would without it', async () => {
    const name = queue('reg-old-node');
    const child = startNode(['--require', 'queue-otel/register'], CJS_APP, { QUEUE: name, JOBS: 'a', ...otlp() }, OLD_NODE!.path);
    children.push(child);
    await child.waitFor(/JOBS_DONE/);
    child.kill('SIGTERM');
    await child.exited;
    expect(child.stderr().trim()).toBe(
      `queue-otel: needs Node.js 22.15.0 or later (22.15+ or 24), this is ${OLD_NODE!.version}; OpenTelemetry was not started and the application runs without it`,
    );
    expect(receiver.spans()).toEqual([]);
  });

  it.skipIf(OLD_NODE === undefined)('the demo says the same and exits 1', async () => {
    const child = startNode([], 'examples/demo/node-version.mjs', {}, OLD_NODE!.path);
    expect(await child.exited).toEqual({ code: 1, signal: null });
    expect(child.stderr().trim()).toBe(
      `demo: queue-otel needs Node.js 22.15.0 or later (22.15+ or 24), this is ${OLD_NODE!.version}. Install one (e.g. nvm install 24) and run npm run demo again.`,
    );
  });
});

describe('sandboxed processors under register', () => {
  it.each([['child process', 'false'], ['worker thread', 'true']])(
    'the %s inherits the preload flag but starts no second SDK: one span, no port taken twice',
    async (_label, threads) => {
      const name = queue('reg-sandbox');
      const port = await freePort();
      const child = start(['--require', 'queue-otel/register'], 'test/fixtures/register/sandbox-app.cjs', {
        QUEUE: name,
        THREADS: threads,
        OTEL_LOG_LEVEL: 'warn',
        OTEL_METRICS_EXPORTER: 'prometheus,otlp',
        OTEL_EXPORTER_PROMETHEUS_HOST: '127.0.0.1',
        OTEL_EXPORTER_PROMETHEUS_PORT: String(port),
        QUEUE_OTEL_DASHBOARD_PORT: '0',
        ...otlp({ OTEL_METRICS_EXPORTER: 'prometheus,otlp' }),
      });
      const [line] = await child.waitFor(/JOBS_DONE .*/);
      expect(JSON.parse(line.slice('JOBS_DONE '.length)).doubled).toBe(42);
      await sleep(300); // the 'completed' event comes just before the attempt's span ends
      child.kill('SIGTERM');
      await child.exited;
      expect(receiver.spans().filter((s) => s.name === `process ${name}`)).toHaveLength(1);
      expect(child.stderr()).not.toMatch(/EADDRINUSE/);
      expect(child.stderr().match(/live dashboard on/g)).toHaveLength(1);
    },
  );
});

describe('node --import queue-otel/register (ES module app)', () => {
  it("instruments a static `import { Worker } from 'bullmq'` and serves Prometheus metrics", async () => {
    const name = queue('reg-esm');
    const port = await freePort();
    const child = start(['--import', 'queue-otel/register'], ESM_APP, {
      QUEUE: name,
      JOBS: 'a,b,b',
      ...prometheus(port),
    });
    await child.waitFor(/JOBS_DONE/);
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const line = (job: string) =>
      text.split('\n').find((l) => l.startsWith('messaging_client_consumed_messages_total{') && l.includes(`messaging_destination_name="${name}"`) && l.includes(`queue_job_name="${job}"`));
    expect(line('a')).toMatch(/ 1$/);
    expect(line('b')).toMatch(/ 2$/);
    expect(text).toMatch(new RegExp(`^queue_job_busy_time_total\\{[^}]*messaging_destination_name="${name}"`, 'm'));
    child.kill('SIGTERM');
    expect(await child.exited).toEqual({ code: null, signal: 'SIGTERM' });
  });

  it('instruments pg-boss and graphile-worker (ES modules imported by an ES module app): their jobs in the Prometheus metrics', async () => {
    const schema = schemaName('reg_pg');
    schemas.push(schema, `${schema}_boss`);
    const name = queueName('reg-pgboss').replace(/-/g, '_');
    const port = await freePort();
    const child = start(['--import', 'queue-otel/register'], POSTGRES_APP, {
      PG_URL: pgUrl(),
      QO_SCHEMA: schema,
      QO_QUEUE: name,
      ...prometheus(port),
    });
    await child.waitFor(/JOBS_DONE/);
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const busy = (system: string, queueLabel: string) =>
      text.split('\n').find((l) => l.startsWith('queue_job_busy_time_total{') && l.includes(`messaging_system="${system}"`) && l.includes(`messaging_destination_name="${queueLabel}"`));
    // Busy time is queue-otel's alone (neither library reports it): its presence shows the patch took.
    expect(busy('pg-boss', name)).toBeDefined();
    expect(busy('graphile-worker', schema)).toBeDefined();
    const waits = (system: string) =>
      text.split('\n').find((l) => l.startsWith('queue_job_wait_duration_count{') && l.includes(`messaging_system="${system}"`));
    expect(waits('pg-boss')).toMatch(/ 2$/);
    expect(waits('graphile-worker')).toMatch(/ 1$/);
    child.kill('SIGTERM');
    expect(await child.exited).toEqual({ code: 0, signal: null });
  }, 60_000);
});

describe('beside @opentelemetry/auto-instrumentations-node', () => {
  it('joins the SDK that auto-instrumentations started: one SDK, its spans and ours, metrics of both in the same export', async () => {
    const name = queue('reg-auto');
    const child = start(
      ['--require', '@opentelemetry/auto-instrumentations-node/register', '--require', 'queue-otel/register'],
      CJS_APP,
      {
        QUEUE: name,
        JOBS: 'one',
        HTTP_URL: `${receiver.url}/ping`,
        SIGTERM_HANDLER: 'close',
        OTEL_NODE_ENABLED_INSTRUMENTATIONS: 'http',
        ...otlp({ OTEL_METRIC_EXPORT_INTERVAL: '1000', OTEL_BSP_SCHEDULE_DELAY: '500' }),
      },
    );
    // auto-instrumentations-node loads every instrumentation and cloud detector: slow to start.
    await child.waitFor(/JOBS_DONE/, 60_000);
    // One metric export carries both instrumentations' metrics: they share one MeterProvider.
    await until(() => {
      return receiver.metrics.some((r) =>
        r.resourceMetrics.some((rm) => {
          const scopes = rm.scopeMetrics.map((s) => s.scope.name);
          return scopes.includes('queue-otel/bullmq') && scopes.includes('@opentelemetry/instrumentation-http');
        }),
      );
    }, 15_000, 'one metric export with queue-otel/bullmq and @opentelemetry/instrumentation-http');
    child.kill('SIGTERM');
    expect(await child.exited).toEqual({ code: 0, signal: null });
    const spans = receiver.spans();
    expect(spans.filter((s) => s.name === `process ${name}`)).toHaveLength(1);
    expect(spans.filter((s) => s.name === `send ${name}`)).toHaveLength(1);
    expect(spans.some((s) => s.scope === '@opentelemetry/instrumentation-http' && s.name === 'GET')).toBe(true);
    // A second SDK would have exported its own copy of every metric: one series per job name here.
    const busy = metricPoints(receiver.metrics.slice(-1), 'queue.job.busy.time').filter((p) => p.attributes['messaging.destination.name'] === name);
    expect(busy).toHaveLength(1);
    expect(child.stderr()).not.toMatch(/QUEUE_OTEL_REGISTER_ORDER|Error/);
  }, 120_000);

  it('warns when loaded before auto-instrumentations, and still adds its instrumentations to that SDK', async () => {
    const name = queue('reg-auto-order');
    const child = start(
      ['--require', 'queue-otel/register', '--require', '@opentelemetry/auto-instrumentations-node/register'],
      CJS_APP,
      { QUEUE: name, JOBS: 'one', SIGTERM_HANDLER: 'close', OTEL_NODE_ENABLED_INSTRUMENTATIONS: 'http', ...otlp({ OTEL_METRIC_EXPORT_INTERVAL: '1000' }) },
    );
    await child.waitFor(/JOBS_DONE/, 60_000);
    await until(() => metricPoints(receiver.metrics, 'queue.job.busy.time').some((p) => p.attributes['messaging.destination.name'] === name), 15_000, 'busy time exported');
    child.kill('SIGTERM');
    expect(await child.exited).toEqual({ code: 0, signal: null });
    expect(child.stderr()).toContain('QUEUE_OTEL_REGISTER_ORDER');
    expect(receiver.spans().filter((s) => s.name === `process ${name}`)).toHaveLength(1);
  }, 120_000);
});
