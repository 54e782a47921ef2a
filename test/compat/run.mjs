#!/usr/bin/env node
// Compatibility smoke test: does what a user installs from npm work in both kinds of
// OpenTelemetry project, loaded as CommonJS and as ESM?
//
// 1. Builds dist/ if it is missing, then `npm pack`s the package into a fresh temp dir.
// 2. For each scenario (OTel JS 2.x + bullmq 5, OTel JS 3.x + bullmq 6) creates a fresh project
//    and `npm install`s the scenario's dependencies plus the packed tarball. Any ERESOLVE or
//    peer-dependency warning in npm's output, a failing install or a failing `npm ls --all` fails
//    both of the scenario's checks.
// 3. Runs app.cjs and app.mjs in that project: a real NodeSDK with BullMQInstrumentation, one job
//    through a real Worker on the local Redis, and asserts spans, return value and a metric, and
//    that queue-otel/dashboard's reader, beside the app's, serves the queue in its snapshot.
// 4. Runs two zero-code apps with no OpenTelemetry code, `node --require queue-otel/register` and
//    `node --import queue-otel/register` (a static import of bullmq): the Prometheus endpoint
//    register started shows the job, and on SIGTERM the console exporter prints the process span
//    before the process dies by the signal.
// 5. Installs bull 3.29.3 (outside the supported range), then the tarball, in a fresh project:
//    no ERESOLVE, no peer warning, and a later plain `npm install` and `npm ls --all` pass.
//
// 5. Type-checks a consumer file that imports every entry point (queue-otel, queue-otel/register,
//    queue-otel/dashboard) with `skipLibCheck: false`, under each TypeScript module resolution
//    users have: node10 (`"moduleResolution": "node"`, NestJS's default with `"module": "commonjs"`),
//    node16 and nodenext (a .cts and a .mts consumer each) and bundler. A `@ts-expect-error` on a
//    wrong option proves the types were found rather than taken as `any`.
//
// Prints `compat: <scenario> <cjs|esm> ok|FAIL ...` per check and `N passed, N failed` at the end;
// exits 1 if any check failed. Needs Redis (REDIS_URL, default redis://127.0.0.1:6379) and the
// npm registry. QO_COMPAT_KEEP=1 keeps the temp dir for inspection.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const INSTALL_TIMEOUT_MS = 10 * 60_000;
const APP_TIMEOUT_MS = 90_000;
// tsc with skipLibCheck false reads every declaration file of OpenTelemetry, bullmq and Node:
// 30-50 s each on a loaded 2-core machine.
const TYPECHECK_TIMEOUT_MS = 10 * 60_000;

const SCENARIOS = [
  {
    name: 'otel-2.x',
    deps: [
      '@opentelemetry/api@1.9.0',
      '@opentelemetry/sdk-node@0.223.0',
      '@opentelemetry/sdk-trace-base@^2',
      '@opentelemetry/sdk-metrics@^2',
      'bullmq@^5',
      'ioredis@^5',
    ],
    // OTel JS 2.x: InMemorySpanExporter lives in sdk-trace-base.
    tracePackage: '@opentelemetry/sdk-trace-base',
    bullmqMajor: 5,
  },
  {
    name: 'otel-3.x',
    deps: [
      '@opentelemetry/api@^1.10.0',
      '@opentelemetry/sdk-node@^0.301.0',
      '@opentelemetry/sdk-trace@^3',
      '@opentelemetry/sdk-metrics@^3',
      'bullmq@^6',
      'ioredis@^5',
    ],
    // OTel JS 3.x: sdk-trace-base is gone; InMemorySpanExporter lives in sdk-trace.
    tracePackage: '@opentelemetry/sdk-trace',
    bullmqMajor: 6,
  },
  {
    // A 2.x project that wires its SDK by hand, without sdk-node: installing queue-otel must add
    // no peer conflict (sdk-node is an optional peer, not a dependency: as a dependency npm picks
    // 0.30x, whose peer is api 1.10, and warns ERESOLVE here), and register must say what is missing.
    name: 'otel-2.x-without-sdk-node',
    deps: ['@opentelemetry/api@1.9.0', '@opentelemetry/sdk-trace-base@^2', '@opentelemetry/sdk-metrics@^2', 'bullmq@^5', 'ioredis@^5'],
    tracePackage: '@opentelemetry/sdk-trace-base',
    bullmqMajor: 5,
    withoutSdkNode: true,
  },
];

// How each module system is started. ESM: the documented way for @opentelemetry/instrumentation
// 0.223 / 0.301 (its README, "Instrumentation for ECMAScript Modules (ESM) in Node.js", and
// opentelemetry-js doc/esm-support.md) is the loader hook flag
// `--experimental-loader=@opentelemetry/instrumentation/hook.mjs` (it re-exports
// import-in-the-middle's hook). Without it, `import('bullmq')` is never seen by the
// instrumentation. The bare specifier is resolved from the cwd, i.e. the scenario project.
// (Node 24 prints an ExperimentalWarning for the flag; that is expected.)
const MODULE_SYSTEMS = [
  { name: 'cjs', file: 'app.cjs', nodeArgs: [] },
  { name: 'esm', file: 'app.mjs', nodeArgs: ['--experimental-loader=@opentelemetry/instrumentation/hook.mjs'] },
];

/** The environment for child processes, without the npm_* variables `npm run` adds. */
function childEnv(extra = {}) {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^npm_/i.test(k)) env[k] = v;
  return { ...env, ...extra };
}

function run(cmd, args, opts = {}) {
  const started = Date.now();
  const r = spawnSync(cmd, args, {
    cwd: opts.cwd ?? ROOT,
    env: opts.env ?? childEnv(),
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: opts.timeout ?? INSTALL_TIMEOUT_MS,
    maxBuffer: 64 * 1024 * 1024,
  });
  const output = `${r.stdout ?? ''}${r.stderr ?? ''}`;
  return {
    status: r.status,
    signal: r.signal,
    error: r.error,
    stdout: r.stdout ?? '',
    stderr: r.stderr ?? '',
    output,
    seconds: ((Date.now() - started) / 1000).toFixed(1),
    ok: r.status === 0 && !r.error,
  };
}

function describeExit(r) {
  if (r.error) return `${r.error.code ?? ''} ${r.error.message}`.trim();
  if (r.signal) return `killed by ${r.signal}`;
  return `exit ${r.status}`;
}

function indent(text, max = 60) {
  const lines = text.trimEnd().split('\n');
  const shown = lines.length > max ? ['...', ...lines.slice(-max)] : lines;
  return shown.map((l) => `    | ${l}`).join('\n');
}

// ---------------------------------------------------------------------------------------------
// The two apps. Same body; only how modules are loaded differs.

const APP_BODY = String.raw`
class CollectingReader extends MetricReader {
  async onShutdown() {}
  async onForceFlush() {}
}

const METRIC = 'messaging.client.consumed.messages';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error('timed out after ' + ms + ' ms waiting for ' + what)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

async function poll(fn, ms) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await fn();
    if (value || Date.now() > deadline) return value;
    await sleep(100);
  }
}

const failures = [];
const info = {};

async function main() {
  const spans = new InMemorySpanExporter();
  const reader = new CollectingReader();
  // queue-otel/dashboard: its reader beside the app's own, in the app's SDK.
  const dashboard = createQueueDashboard({ port: 0 });
  const sdk = new NodeSDK({
    instrumentations: [new BullMQInstrumentation()],
    traceExporter: spans,
    metricReaders: [reader, dashboard.reader],
  });
  sdk.start();

  // bullmq is loaded only now, after the SDK (and so the instrumentation) is on.
  const { Queue, Worker } = await loadBullmq();
  info.queueOtel = resolveFrom('queue-otel');
  info.bullmq = resolveFrom('bullmq');

  const url = new URL(process.env.REDIS_URL || 'redis://127.0.0.1:6379');
  const connection = { host: url.hostname, port: Number(url.port || 6379), maxRetriesPerRequest: null };
  const name = 'qo-compat-' + randomUUID().slice(0, 8);
  info.queue = name;
  const queue = new Queue(name, { connection });
  let worker;
  try {
    const done = new Promise((resolve, reject) => {
      worker = new Worker(name, async () => 42, { connection });
      worker.on('completed', (job, result) => resolve(result));
      worker.on('failed', (job, err) => reject(err));
      worker.on('error', reject);
    });
    done.catch(() => {}); // handled where awaited; keeps an early worker error from crashing the app
    queue.on('error', (error) => failures.push('queue error: ' + String(error)));
    const job = await queue.add('compat', { hello: 'world' });
    const result = await withTimeout(done, 20000, 'the job to complete');
    const stored = await queue.getJob(job.id);
    info.returnvalue = stored && stored.returnvalue;
    if (result !== 42) failures.push('completed event result is ' + JSON.stringify(result) + ', expected 42');
    if (!stored || stored.returnvalue !== 42) failures.push('stored returnvalue is ' + JSON.stringify(stored && stored.returnvalue) + ', expected 42');

    // Spans: NodeSDK puts traceExporter behind a BatchSpanProcessor and has no forceFlush of its
    // own, so flush the registered tracer provider (the global proxy's delegate).
    const provider = trace.getTracerProvider();
    const sdkProvider = typeof provider.getDelegate === 'function' ? provider.getDelegate() : provider;
    const findSpans = async () => {
      await sdkProvider.forceFlush();
      const all = spans.getFinishedSpans();
      const consumer = all.find((s) => s.name === 'process ' + name && s.kind === SpanKind.CONSUMER);
      const producer = all.find((s) => s.name === 'send ' + name && s.kind === SpanKind.PRODUCER);
      return consumer && producer ? { all, consumer, producer } : undefined;
    };
    const found = await poll(findSpans, 5000);
    const all = spans.getFinishedSpans();
    info.spans = all.map((s) => s.name + ' [' + SpanKind[s.kind] + ']');
    if (!found) {
      if (!all.some((s) => s.name === 'process ' + name && s.kind === SpanKind.CONSUMER)) failures.push('no CONSUMER span "process ' + name + '"');
      if (!all.some((s) => s.name === 'send ' + name && s.kind === SpanKind.PRODUCER)) failures.push('no PRODUCER span "send ' + name + '"');
    }

    const findPoint = async () => {
      const { resourceMetrics, errors } = await reader.collect();
      if (errors.length > 0) throw errors[0];
      const metrics = resourceMetrics.scopeMetrics.flatMap((s) => s.metrics);
      info.metrics = [...new Set(metrics.map((m) => m.descriptor.name))];
      const metric = metrics.find((m) => m.descriptor.name === METRIC);
      info.consumedPoints = metric ? metric.dataPoints.map((p) => ({ value: p.value, attributes: p.attributes })) : [];
      // Deliveries (attempts started), by queue: the schema has no outcome on this counter.
      return metric && metric.dataPoints.find((p) => p.value === 1 && p.attributes['messaging.destination.name'] === name);
    };
    if (!(await poll(findPoint, 5000))) {
      failures.push('no data point of ' + METRIC + ' with value 1 for queue ' + name);
    }
    const dashboardUrl = await dashboard.ready;
    const inSnapshot = async () => {
      const snapshot = await (await fetch(dashboardUrl + 'api/snapshot')).json();
      return snapshot.queues.some((q) => q.name === name && q.concurrency.some((c) => c === 1));
    };
    if (!(await poll(inSnapshot, 8000))) failures.push('the dashboard snapshot has no concurrency 1 for queue ' + name);
  } catch (error) {
    failures.push('error: ' + (error && error.stack ? error.stack : String(error)));
  } finally {
    try {
      if (worker) await worker.close();
      await queue.obliterate({ force: true });
      await queue.close();
    } catch (error) {
      failures.push('cleanup: ' + String(error));
    }
    await sdk.shutdown().catch((error) => failures.push('sdk.shutdown: ' + String(error)));
    await dashboard.close();
  }
  console.log('QO_COMPAT_RESULT ' + JSON.stringify({ ok: failures.length === 0, failures: [...new Set(failures)], info }));
  process.exitCode = failures.length === 0 ? 0 : 1;
}

// Whatever happens, do not hang the runner.
setTimeout(() => {
  failures.push('app did not finish within 60 s (is Redis up?)');
  console.log('QO_COMPAT_RESULT ' + JSON.stringify({ ok: false, failures: [...new Set(failures)], info }));
  process.exit(1);
}, 60000).unref();

main().catch((error) => {
  failures.push('error: ' + (error && error.stack));
  console.log('QO_COMPAT_RESULT ' + JSON.stringify({ ok: false, failures, info }));
  process.exit(1);
});
`;

function cjsApp(tracePackage) {
  return `'use strict';
// CommonJS app: the SDK starts first, then bullmq is require()d (require-in-the-middle patches it).
const { randomUUID } = require('node:crypto');
const { SpanKind, trace } = require('@opentelemetry/api');
const { NodeSDK } = require('@opentelemetry/sdk-node');
const { InMemorySpanExporter } = require(${JSON.stringify(tracePackage)});
const { MetricReader } = require('@opentelemetry/sdk-metrics');
const { BullMQInstrumentation } = require('queue-otel');
const { createQueueDashboard } = require('queue-otel/dashboard');

const loadBullmq = async () => require('bullmq');
const resolveFrom = (id) => require.resolve(id);
${APP_BODY}`;
}

function esmApp(tracePackage) {
  return `// ESM app: the SDK starts first, then bullmq is import()ed. Run with
//   node --experimental-loader=@opentelemetry/instrumentation/hook.mjs app.mjs
// (the documented ESM hook of @opentelemetry/instrumentation, import-in-the-middle underneath).
import { randomUUID } from 'node:crypto';
import { SpanKind, trace } from '@opentelemetry/api';
import { NodeSDK } from '@opentelemetry/sdk-node';
import { InMemorySpanExporter } from ${JSON.stringify(tracePackage)};
import { MetricReader } from '@opentelemetry/sdk-metrics';
import { BullMQInstrumentation } from 'queue-otel';
import { createQueueDashboard } from 'queue-otel/dashboard';

const loadBullmq = () => import('bullmq');
const resolveFrom = (id) => fileURLToPathSafe(import.meta.resolve(id));
function fileURLToPathSafe(url) {
  return url.startsWith('file://') ? decodeURIComponent(new URL(url).pathname) : url;
}
${APP_BODY}`;
}

// ---------------------------------------------------------------------------------------------
// Zero-code apps: no OpenTelemetry code at all, started with `node --require queue-otel/register`
// or `node --import queue-otel/register` (a static import of bullmq in the ESM one). Register
// reads OTEL_METRICS_EXPORTER=prometheus and OTEL_TRACES_EXPORTER=console from the environment.

const REGISTER_BODY = String.raw`
const url = new URL(process.env.REDIS_URL || 'redis://127.0.0.1:6379');
const connection = { host: url.hostname, port: Number(url.port || 6379), maxRetriesPerRequest: null };
const name = 'qo-compat-reg-' + randomUUID().slice(0, 8);
const failures = [];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function main() {
  const queue = new Queue(name, { connection });
  const worker = new Worker(name, async () => 42, { connection });
  const done = new Promise((resolve, reject) => {
    worker.on('completed', (job, result) => resolve(result));
    worker.on('failed', (job, error) => reject(error));
  });
  await queue.add('compat', {});
  const timer = setTimeout(() => failures.push('the job did not complete within 20 s'), 20000);
  const result = await done;
  clearTimeout(timer);
  if (result !== 42) failures.push('result ' + JSON.stringify(result) + ', expected 42');
  // The Prometheus endpoint register started from OTEL_EXPORTER_PROMETHEUS_PORT.
  let line;
  for (let i = 0; i < 25 && !line; i++) {
    const text = await (await fetch('http://127.0.0.1:' + process.env.OTEL_EXPORTER_PROMETHEUS_PORT + '/metrics')).text();
    line = text.split('\n').find((l) => l.startsWith('messaging_client_consumed_messages_total{') && l.includes('"' + name + '"') && l.endsWith(' 1'));
    if (!line) await sleep(200);
  }
  if (!line) failures.push('no messaging_client_consumed_messages_total{...' + name + '...} 1 on /metrics');
  await worker.close();
  await queue.obliterate({ force: true });
  await queue.close();
  console.log('QO_COMPAT_RESULT ' + JSON.stringify({ ok: failures.length === 0, failures, info: { queue: name } }));
  // Stopped like a worker in production: register flushes the spans (console exporter), then the
  // process dies by the signal as it would without instrumentation.
  process.kill(process.pid, 'SIGTERM');
}
main().catch((error) => {
  console.log('QO_COMPAT_RESULT ' + JSON.stringify({ ok: false, failures: ['error: ' + (error && error.stack)], info: { queue: name } }));
  process.exit(1);
});
`;

const REGISTER_APPS = [
  {
    name: 'register-cjs',
    file: 'register-app.cjs',
    nodeArgs: ['--require', 'queue-otel/register'],
    source: `'use strict';\n// No OpenTelemetry code: node --require queue-otel/register register-app.cjs\nconst { randomUUID } = require('node:crypto');\nconst { Queue, Worker } = require('bullmq');\n${REGISTER_BODY}`,
  },
  {
    name: 'register-esm',
    file: 'register-app.mjs',
    nodeArgs: ['--import', 'queue-otel/register'],
    source: `// No OpenTelemetry code, a static import: node --import queue-otel/register register-app.mjs\nimport { randomUUID } from 'node:crypto';\nimport { Queue, Worker } from 'bullmq';\n${REGISTER_BODY}`,
  },
];

// ---------------------------------------------------------------------------------------------
// Types: one consumer, every entry point, every module resolution.

/** Installed beside each scenario's dependencies for the type checks (the oldest Node types we support). */
const TYPE_DEPS = ['typescript@~5.9.0', '@types/node@^22'];

const CONSUMER = `import { BullMQInstrumentation, getQueueInstrumentations, type QueueInstrumentationConfig } from 'queue-otel';
import { shutdown } from 'queue-otel/register';
import { createQueueDashboard, type QueueDashboard } from 'queue-otel/dashboard';

const config: QueueInstrumentationConfig = { maxJobNamesPerQueue: 10, queues: ['emails'] };
export const instrumentation: BullMQInstrumentation = new BullMQInstrumentation(config);
export const all = getQueueInstrumentations(config);
export const dashboard: QueueDashboard = createQueueDashboard({ port: 0, serviceName: 'api' });
export const stopped: Promise<void> = shutdown();
// @ts-expect-error: the types are queue-otel's own, not any: a string is not a number of names.
export const wrong = new BullMQInstrumentation({ maxJobNamesPerQueue: 'ten' });
`;

const TYPE_SETUPS = [
  { name: 'node10', module: 'commonjs', moduleResolution: 'node10', files: ['consumer.ts'] },
  { name: 'node16', module: 'node16', moduleResolution: 'node16', files: ['consumer.cts', 'consumer.mts'] },
  { name: 'nodenext', module: 'nodenext', moduleResolution: 'nodenext', files: ['consumer.cts', 'consumer.mts'] },
  { name: 'bundler', module: 'esnext', moduleResolution: 'bundler', files: ['consumer.ts'] },
];

/** Type-checks the consumer under every setup in a scenario's project. */
function runTypeChecks(dir, scenario, record) {
  for (const file of new Set(TYPE_SETUPS.flatMap((t) => t.files))) writeFileSync(join(dir, file), CONSUMER);
  const tsc = join(dir, 'node_modules', 'typescript', 'bin', 'tsc');
  for (const setup of TYPE_SETUPS) {
    const config = `tsconfig.${setup.name}.json`;
    writeFileSync(
      join(dir, config),
      JSON.stringify(
        {
          compilerOptions: {
            module: setup.module,
            moduleResolution: setup.moduleResolution,
            target: 'es2022',
            strict: true,
            skipLibCheck: false,
            noEmit: true,
            types: ['node'],
          },
          files: setup.files,
        },
        null,
        2,
      ) + '\n',
    );
    const r = run(process.execPath, [tsc, '-p', config], { cwd: dir, timeout: TYPECHECK_TIMEOUT_MS });
    const label = `${scenario.name} types ${setup.name}`;
    record(label, r.ok, r.ok ? `${r.seconds}s, ${setup.files.join(' and ')} clean with skipLibCheck false` : `${describeExit(r)}: ${r.output.split('\n')[0]}`);
    if (!r.ok) console.log(`    command: (cd ${dir} && node ${tsc} -p ${config}) -> ${describeExit(r)}\n${indent(r.output)}`);
  }
}

function freePort() {
  return new Promise((done, fail) => {
    const server = createServer();
    server.once('error', fail);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => done(port));
    });
  });
}

/** Runs one zero-code app; it must report ok, print its process span, and die by SIGTERM. */
async function runRegisterApp(dir, scenario, app, record) {
  const label = `${scenario.name} ${app.name}`;
  const port = await freePort();
  const r = run(process.execPath, [...app.nodeArgs, app.file], {
    cwd: dir,
    timeout: APP_TIMEOUT_MS,
    env: childEnv({
      OTEL_SERVICE_NAME: 'qo-compat',
      OTEL_METRICS_EXPORTER: 'prometheus',
      OTEL_EXPORTER_PROMETHEUS_HOST: '127.0.0.1',
      OTEL_EXPORTER_PROMETHEUS_PORT: String(port),
      OTEL_TRACES_EXPORTER: 'console',
      OTEL_LOGS_EXPORTER: 'none',
    }),
  });
  const result = parseResult(r.stdout);
  const queue = result?.info?.queue;
  const problems = [...(result?.failures ?? [])];
  if (!result) problems.push(`no result line, ${describeExit(r)}`);
  if (queue && !r.stdout.includes(`process ${queue}`)) problems.push(`no "process ${queue}" span printed by the console exporter before exit`);
  if (r.signal !== 'SIGTERM') problems.push(`expected to die by SIGTERM after flushing, got ${describeExit(r)}`);
  const ok = problems.length === 0;
  record(label, ok, ok ? `${r.seconds}s, span flushed on SIGTERM, Prometheus endpoint served` : problems[0].split('\n')[0]);
  if (!ok) {
    console.log(`    command: (cd ${dir} && node ${[...app.nodeArgs, app.file].join(' ')}) -> ${describeExit(r)} in ${r.seconds}s`);
    console.log(indent(problems.join('\n')));
    console.log(`    output:\n${indent(r.output)}`);
  }
}

function parseResult(output) {
  const line = output.split('\n').reverse().find((l) => l.startsWith('QO_COMPAT_RESULT '));
  if (!line) return undefined;
  try {
    return JSON.parse(line.slice('QO_COMPAT_RESULT '.length));
  } catch {
    return undefined;
  }
}

const PEER_PROBLEM = /ERESOLVE|peer dep|conflicting peer|could not resolve dependency|unmet peer|invalid peer/i;

async function main() {
  const started = Date.now();
  const results = [];
  const record = (label, ok, detail) => {
    results.push(ok);
    console.log(`compat: ${label} ${ok ? 'ok' : 'FAIL'}${detail ? ` (${detail})` : ''}`);
  };

  if (!existsSync(join(ROOT, 'dist/cjs/index.js')) || !existsSync(join(ROOT, 'dist/esm/index.js'))) {
    console.log('compat: dist/ missing, running npm run build');
    const b = run('npm', ['run', 'build']);
    if (!b.ok) {
      console.log(`compat: build failed (${describeExit(b)})\n${indent(b.output)}`);
      console.log(`0 passed, ${SCENARIOS.length * (MODULE_SYSTEMS.length + REGISTER_APPS.length + TYPE_SETUPS.length)} failed`);
      process.exit(1);
    }
  }

  const tmp = mkdtempSync(join(tmpdir(), 'queue-otel-compat-'));
  console.log(`compat: working in ${tmp}`);
  try {
    const pack = run('npm', ['pack', '--pack-destination', tmp, '--json']);
    const tarballs = readdirSync(tmp).filter((f) => f.endsWith('.tgz'));
    if (!pack.ok || tarballs.length !== 1) {
      console.log(`compat: npm pack failed (${describeExit(pack)}, tarballs: ${tarballs.join(', ') || 'none'})\n${indent(pack.output)}`);
      console.log(`0 passed, ${SCENARIOS.length * (MODULE_SYSTEMS.length + REGISTER_APPS.length + TYPE_SETUPS.length)} failed`);
      process.exitCode = 1;
      return;
    }
    const tarball = join(tmp, tarballs[0]);
    console.log(`compat: packed ${tarballs[0]} in ${pack.seconds}s`);

    for (const scenario of SCENARIOS) {
      const dir = join(tmp, scenario.name);
      mkdirSync(dir);
      writeFileSync(
        join(dir, 'package.json'),
        JSON.stringify({ name: `qo-compat-${scenario.name.replace(/\W/g, '-')}`, version: '0.0.0', private: true }, null, 2) + '\n',
      );
      writeFileSync(join(dir, 'app.cjs'), cjsApp(scenario.tracePackage));
      writeFileSync(join(dir, 'app.mjs'), esmApp(scenario.tracePackage));
      for (const app of REGISTER_APPS) writeFileSync(join(dir, app.file), app.source);

      const deps = scenario.withoutSdkNode ? scenario.deps : [...scenario.deps, ...TYPE_DEPS];
      const install = run('npm', ['install', '--no-audit', '--no-fund', ...deps, tarball], { cwd: dir });
      const peerLines = install.output.split('\n').filter((l) => PEER_PROBLEM.test(l));
      let installProblem;
      if (!install.ok) installProblem = `npm install failed: ${describeExit(install)}`;
      else if (peerLines.length > 0) installProblem = 'npm install reported peer dependency problems';
      let ls;
      if (!installProblem) {
        ls = run('npm', ['ls', '--all'], { cwd: dir });
        if (!ls.ok) installProblem = `npm ls --all failed: ${describeExit(ls)}`;
      }
      const versions = ['@opentelemetry/api', '@opentelemetry/sdk-node', '@opentelemetry/instrumentation', 'bullmq', 'queue-otel']
        .map((p) => `${p}@${installedVersion(dir, p)}`)
        .join(' ');
      // queue-otel's own copy of @opentelemetry/instrumentation, when npm could not share the app's.
      const nested = installedVersion(join(dir, 'node_modules', 'queue-otel'), '@opentelemetry/instrumentation');
      const versionsLine = nested === '?' ? versions : `${versions} (queue-otel's own @opentelemetry/instrumentation@${nested})`;
      console.log(`compat: ${scenario.name} installed in ${install.seconds}s: ${versionsLine}`);
      if (installProblem) {
        const detail = peerLines.length > 0 ? peerLines.join('\n') : (ls && !ls.ok ? ls.output : install.output);
        console.log(`compat: ${scenario.name} install problem: ${installProblem}\n${indent(detail)}`);
        if (scenario.withoutSdkNode) record(`${scenario.name} install`, false, installProblem);
        for (const ms of scenario.withoutSdkNode ? [] : MODULE_SYSTEMS) record(`${scenario.name} ${ms.name}`, false, installProblem);
        for (const app of scenario.withoutSdkNode ? [] : REGISTER_APPS) record(`${scenario.name} ${app.name}`, false, installProblem);
        for (const t of scenario.withoutSdkNode ? [] : TYPE_SETUPS) record(`${scenario.name} types ${t.name}`, false, installProblem);
        continue;
      }

      if (scenario.withoutSdkNode) {
        // Register cannot start an SDK without sdk-node: it says so in one line with the install
        // command, and the application runs as it would without it (never stopped by telemetry).
        const r = run(process.execPath, ['--require', 'queue-otel/register', '-e', "console.log('APP_RAN')"], {
          cwd: dir,
          timeout: APP_TIMEOUT_MS,
          env: childEnv({ OTEL_METRICS_EXPORTER: 'none', OTEL_TRACES_EXPORTER: 'none', OTEL_LOGS_EXPORTER: 'none' }),
        });
        const said = /^queue-otel\/register needs @opentelemetry\/sdk-node, which is not installed: npm install @opentelemetry\/sdk-node .*the application runs without it$/.test(r.stderr.trim());
        const ok = r.status === 0 && r.stdout === 'APP_RAN\n' && said;
        record(`${scenario.name} register says sdk-node is missing`, ok, ok ? `${r.seconds}s, one line with the install command, the app ran` : describeExit(r));
        if (!ok) console.log(`    output:\n${indent(r.output)}`);
        continue;
      }
      for (const ms of MODULE_SYSTEMS) {
        const label = `${scenario.name} ${ms.name}`;
        const app = run(process.execPath, [...ms.nodeArgs, ms.file], {
          cwd: dir,
          timeout: APP_TIMEOUT_MS,
          // No OTLP endpoint here: keep NodeSDK from setting up env-configured log/metric exporters.
          env: childEnv({ OTEL_LOGS_EXPORTER: 'none', OTEL_METRICS_EXPORTER: 'none' }),
        });
        const result = parseResult(app.stdout);
        const ok = app.ok && result?.ok === true;
        if (ok) {
          record(label, true, `${app.seconds}s, bullmq ${shortPath(result.info?.bullmq)}, queue-otel ${shortPath(result.info?.queueOtel)}`);
        } else {
          const why = result?.failures?.length ? result.failures.join('; ') : `no result line, ${describeExit(app)}`;
          record(label, false, why.split('\n')[0]);
          console.log(`    command: (cd ${dir} && node ${[...ms.nodeArgs, ms.file].join(' ')}) -> ${describeExit(app)} in ${app.seconds}s`);
          if (result?.info) console.log(`    info: ${JSON.stringify(result.info)}`);
          if (result?.failures?.length) console.log(indent(result.failures.join('\n')));
          console.log(`    output:\n${indent(app.output)}`);
        }
      }
      for (const app of REGISTER_APPS) await runRegisterApp(dir, scenario, app, record);
      runTypeChecks(dir, scenario, record);
    }
    outOfRangeInstall(tmp, tarball, record);
  } finally {
    if (process.env.QO_COMPAT_KEEP === '1') console.log(`compat: kept ${tmp}`);
    else rmSync(tmp, { recursive: true, force: true });
  }

  const passed = results.filter(Boolean).length;
  const failed = results.length - passed;
  console.log(`compat: done in ${((Date.now() - started) / 1000).toFixed(1)}s`);
  console.log(`${passed} passed, ${failed} failed`);
  if (failed > 0 || results.length === 0) process.exitCode = 1;
}

/**
 * A project whose queue library is outside the range queue-otel instruments (bull 3.x; likewise
 * bullmq 7 on its release day): installing queue-otel beside it, and npm installs after that, must
 * not fail or warn. queue-otel declares no queue library as a peer dependency for this reason; at
 * run time such a library gets one diag warning and is left alone (test/matrix/library.test.ts).
 */
function outOfRangeInstall(tmp, tarball, record) {
  const dir = join(tmp, 'out-of-range-library');
  mkdirSync(dir);
  writeFileSync(join(dir, 'package.json'), `${JSON.stringify({ name: 'qo-compat-out-of-range', version: '0.0.0', private: true }, null, 2)}\n`);
  const steps = [
    run('npm', ['install', '--no-audit', '--no-fund', 'bull@3.29.3'], { cwd: dir }),
    run('npm', ['install', '--no-audit', '--no-fund', tarball], { cwd: dir }),
    run('npm', ['install', '--no-audit', '--no-fund'], { cwd: dir }),
    run('npm', ['ls', '--all'], { cwd: dir }),
  ];
  const failed = steps.find((r) => !r.ok);
  const peerLines = steps.flatMap((r) => r.output.split('\n').filter((l) => PEER_PROBLEM.test(l)));
  const ok = failed === undefined && peerLines.length === 0;
  const seconds = steps.reduce((t, r) => t + Number(r.seconds), 0).toFixed(1);
  record('bull 3.29.3 (outside the range) then queue-otel install', ok, ok ? `${seconds}s, no ERESOLVE or peer warning` : failed ? describeExit(failed) : 'peer warnings');
  if (!ok) console.log(indent(peerLines.length > 0 ? peerLines.join('\n') : failed.output));
}

/** The version of `name` installed at the top of `dir`'s node_modules (package.json read directly:
 * exports maps may hide it from require). */
function installedVersion(dir, name) {
  try {
    return JSON.parse(readFileSync(join(dir, 'node_modules', name, 'package.json'), 'utf8')).version;
  } catch {
    return '?';
  }
}

/** `.../node_modules/bullmq/dist/esm/index.js` -> `bullmq/dist/esm/index.js`. */
function shortPath(p) {
  if (typeof p !== 'string') return '?';
  const i = p.lastIndexOf('node_modules/');
  return i >= 0 ? p.slice(i + 'node_modules/'.length) : p;
}

await main();
