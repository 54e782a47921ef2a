// Soak: does a long-running instrumented BullMQ worker keep a flat heap and a bounded number of
// metric series, first with a few job names, then with far more job names than the per-queue
// budget (maxJobNamesPerQueue, 100), which folds the rest into `_OTHER`?
//
// Run: `npm run bench:soak` (builds, then runs this file): one instrumented run, then the same run
// plain (no queue-otel, no OpenTelemetry SDK), each in its own `node --expose-gc` process, then a
// combined table. Needs Redis (--redis, default redis://127.0.0.1:6379). About 10 minutes on a
// 2-CPU machine at the defaults.
//
//   node bench/soak.mjs [--jobs N] [--every N] [--concurrency N] [--redis URL]   both runs, one table
//   node --expose-gc bench/soak.mjs --mode instrumented|plain [...]              one run
//
// Options:
//   --jobs N         jobs per phase (default 300000); two phases, so 2N jobs per run
//   --every N        jobs between samples (default 50000; --jobs must be a multiple of it)
//   --concurrency N  worker concurrency (default 10)
//   --names A,B      job names of phase 1 and phase 2 (default 5,5000)
//   --redis URL      Redis (default redis://127.0.0.1:6379)
//   --out FILE       (one run) also write the run's figures as JSON to FILE
//   --leak BYTES     the job keeps a string of about BYTES bytes forever: a leak planted to show
//                    that the checks below catch one (off by default)
//
// One run: one Queue and one Worker (concurrency --concurrency) in this process, on a queue of its
// own (prefix qotel-soak), obliterated at the end. The job is tiny (returns a number) and jobs are
// removed from Redis when they complete. A producer in the same process adds jobs with addBulk in
// batches of 1,000, keeping at most 5,000 jobs waiting. Phase 1 runs --jobs jobs named `a-0` ...
// `a-4` (round robin), phase 2 the next --jobs jobs named `b-0` ... `b-4999`.
// Every --every jobs the producer stops at the mark and the worker drains to it; then (instrumented)
// the meter provider and the tracer provider are flushed, so the last collection is of this point
// and no span waits in the batch queue; then global.gc() is run, and the sample is: heap used,
// RSS, and the number of data points (series) of each instrument in that last collection.
//
// Instrumented, as a user without NodeSDK would run it (README, "Without NodeSDK"):
// registerInstrumentations({ instrumentations: [new BullMQInstrumentation()], tracerProvider,
// meterProvider }) before bullmq is loaded, default options; a TracerProvider with a
// BatchSpanProcessor (default settings) to an exporter that counts spans and drops them; a
// MeterProvider with a PeriodicExportingMetricReader every 3 s (default cumulative temporality) to an
// exporter that keeps the last collection's data-point count per instrument; AsyncLocalStorage
// context manager and W3C propagator.
//
// Checks (a failed check is printed and sets the exit code to 1):
//   - heap after GC: the first sample of each phase against its last (phase 2: after the name
//     budget is full), and the first sample of the run against the last: growth above
//     max(2 MB, 5 %) is reported as growth;
//   - series: every instrument stays under the SDK's cardinality limit (2,000), and no data point
//     carries the SDK's overflow attribute (otel.metric.overflow);
//   - totals: the count of messaging.process.duration over all series equals the jobs run, and in
//     phase 2 some of it is under queue.job.name `_OTHER`;
//   - every job completed; every job has its process span exported (BatchSpanProcessor drops spans
//     when its queue is full; a drop is reported).

import { createRequire } from 'node:module';
import { spawn } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync, mkdtempSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { keepDiag } from './common.mjs';

const require = createRequire(import.meta.url);
const SELF = fileURLToPath(import.meta.url);

// ---- arguments -------------------------------------------------------------------------------------

const args = parseArgs(process.argv.slice(2));
const JOBS = intArg('jobs', 300_000);
const EVERY = intArg('every', 50_000);
const CONCURRENCY = intArg('concurrency', 10);
const NAMES = (args.names ?? '5,5000').split(',').map((x) => Number(x));
const REDIS_URL = args.redis ?? 'redis://127.0.0.1:6379';
const MODE = args.mode;
const LEAK = args.leak === undefined ? 0 : intArg('leak', 0);
if (JOBS % EVERY !== 0) fail(`--jobs (${JOBS}) must be a multiple of --every (${EVERY})`);
if (NAMES.length !== 2 || NAMES.some((n) => !Number.isInteger(n) || n < 1)) fail(`--names must be two integers >= 1, got ${args.names}`);
if (MODE !== undefined && MODE !== 'instrumented' && MODE !== 'plain') fail(`--mode must be instrumented or plain, got ${MODE}`);

const SERIES_LIMIT = 2000; // the SDK's default cardinality limit per instrument
const GROWTH_MB = 2;
const GROWTH_SHARE = 0.05;
const BATCH = 1000;
const MAX_WAITING = 5000;
const PREFIX = 'qotel-soak';
const MB = 1024 * 1024;

function parseArgs(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) fail(`unexpected argument ${a}`);
    const eq = a.indexOf('=');
    if (eq > 0) out[a.slice(2, eq)] = a.slice(eq + 1);
    else out[a.slice(2)] = argv[++i];
  }
  const known = ['jobs', 'every', 'concurrency', 'names', 'redis', 'mode', 'out', 'leak'];
  for (const k of Object.keys(out)) if (!known.includes(k)) fail(`unknown option --${k} (known: ${known.map((x) => '--' + x).join(' ')})`);
  return out;
}

function intArg(name, fallback) {
  if (args[name] === undefined) return fallback;
  const n = Number(args[name]);
  if (!Number.isInteger(n) || n < 1) fail(`--${name} must be an integer >= 1, got ${args[name]}`);
  return n;
}

function fail(message) {
  console.error(`bench/soak: ${message}`);
  process.exit(2);
}

const mb = (bytes) => (bytes / MB).toFixed(1);
const pad = (s, n) => String(s).padStart(n);
const padEnd = (s, n) => String(s).padEnd(n);

// ---- parent: both runs, then one table ---------------------------------------------------------

if (MODE === undefined) {
  const dir = mkdtempSync(join(tmpdir(), 'qotel-soak-'));
  const passOn = ['jobs', 'every', 'concurrency', 'names', 'redis', 'leak'].flatMap((k) => (args[k] === undefined ? [] : [`--${k}`, args[k]]));
  const runs = {};
  let exitCode = 0;
  for (const mode of ['instrumented', 'plain']) {
    const out = join(dir, `${mode}.json`);
    console.log(`\n==== ${mode}: node --expose-gc bench/soak.mjs --mode ${mode} ${passOn.join(' ')}`);
    const code = await new Promise((resolve) => {
      const child = spawn(process.execPath, ['--expose-gc', SELF, '--mode', mode, '--out', out, ...passOn], { stdio: 'inherit' });
      child.on('exit', (c, signal) => resolve(c ?? (signal ? 1 : 0)));
    });
    if (code !== 0) exitCode = 1;
    try {
      runs[mode] = JSON.parse(readFileSync(out, 'utf8'));
    } catch {
      console.error(`bench/soak: the ${mode} run wrote no figures (exit code ${code})`);
      exitCode = 1;
    }
  }
  rmSync(dir, { recursive: true, force: true });
  if (runs.instrumented && runs.plain) printCombined(runs.instrumented, runs.plain);
  process.exit(exitCode);
}

function printCombined(ins, plain) {
  console.log('\n==== soak: instrumented against plain');
  console.log(`${new Date().toISOString()}  ${cpus().length} CPUs  load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  console.log(`node ${process.version}, bullmq ${ins.bullmqVersion}, @opentelemetry/sdk-metrics ${ins.sdkMetricsVersion}, concurrency ${ins.concurrency}`);
  console.log('');
  console.log('    jobs  names  | instrumented: heap MB   RSS MB   series (all / largest instrument) | plain: heap MB   RSS MB');
  for (let i = 0; i < ins.samples.length; i++) {
    const a = ins.samples[i];
    const b = plain.samples[i];
    console.log(
      `${pad(a.jobs, 8)}  ${pad(a.names, 5)}  |               ${pad(mb(a.heapUsed), 7)}  ${pad(mb(a.rss), 7)}   ` +
        `${pad(a.seriesTotal, 5)} / ${pad(a.seriesMax, 4)} ${padEnd(a.seriesMaxName, 28)}|        ${pad(b ? mb(b.heapUsed) : '-', 7)}  ${pad(b ? mb(b.rss) : '-', 7)}`,
    );
  }
  console.log('');
  for (const [label, run] of [['instrumented', ins], ['plain', plain]]) {
    const s = run.samples;
    const lo = Math.min(...s.map((x) => x.heapUsed));
    const hi = Math.max(...s.map((x) => x.heapUsed));
    console.log(`${padEnd(label, 13)} heap after GC ${mb(lo)} to ${mb(hi)} MB over ${s.length} samples; first ${mb(s[0].heapUsed)}, last ${mb(s.at(-1).heapUsed)} MB; ${run.jobsPerSec} jobs/s; checks ${run.failures.length === 0 ? 'passed' : 'FAILED: ' + run.failures.join('; ')}`);
  }
  const insLast = ins.samples.at(-1).heapUsed;
  const plainLast = plain.samples.at(-1).heapUsed;
  console.log(`difference at the last sample: ${mb(insLast - plainLast)} MB heap (instrumented ${mb(insLast)}, plain ${mb(plainLast)})`);
}

// ---- one run ---------------------------------------------------------------------------------------

if (typeof global.gc !== 'function') fail('run with node --expose-gc (or without --mode: the script starts both runs itself)');
const INSTRUMENTED = MODE === 'instrumented';

const diagMessages = INSTRUMENTED ? keepDiag() : [];
let tracerProvider;
let meterProvider;
const spanStats = { exported: 0, process: 0 };
const metricStats = { exports: 0, last: undefined };

if (INSTRUMENTED) {
  const api = require('@opentelemetry/api');
  const { AsyncLocalStorageContextManager } = require('@opentelemetry/context-async-hooks');
  const { W3CTraceContextPropagator } = require('@opentelemetry/core');
  const { TracerProvider, BatchSpanProcessor } = require('@opentelemetry/sdk-trace');
  const { MeterProvider, PeriodicExportingMetricReader } = require('@opentelemetry/sdk-metrics');
  api.context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  api.propagation.setGlobalPropagator(new W3CTraceContextPropagator());

  const countSpans = {
    export(spans, done) {
      spanStats.exported += spans.length;
      for (const s of spans) if (s.kind === api.SpanKind.CONSUMER) spanStats.process++;
      done({ code: 0 });
    },
    async shutdown() {},
    async forceFlush() {},
  };
  tracerProvider = new TracerProvider({ spanProcessors: [new BatchSpanProcessor({ exporter: countSpans })] });

  const keepLastCollection = {
    export(resourceMetrics, done) {
      metricStats.exports++;
      metricStats.last = summarizeCollection(resourceMetrics);
      done({ code: 0 });
    },
    async forceFlush() {},
    async shutdown() {},
  };
  meterProvider = new MeterProvider({
    readers: [new PeriodicExportingMetricReader({ exporter: keepLastCollection, exportIntervalMillis: 3000 })],
  });

  const { registerInstrumentations } = require('@opentelemetry/instrumentation');
  const { BullMQInstrumentation } = require('../dist/cjs/index.js');
  registerInstrumentations({ instrumentations: [new BullMQInstrumentation()], tracerProvider, meterProvider });
}

const { Queue, Worker } = require('bullmq');
const bullmqVersion = require('bullmq/package.json').version;
const sdkMetricsVersion = INSTRUMENTED ? readPackageVersion('@opentelemetry/sdk-metrics') : undefined;
if (INSTRUMENTED && !Worker.prototype.processJob?.__wrapped) fail('the instrumentation did not patch Worker.prototype.processJob');

function readPackageVersion(name) {
  try {
    let dir = require.resolve(name);
    while (dir.includes('/')) {
      dir = dir.slice(0, dir.lastIndexOf('/'));
      try {
        const pkg = JSON.parse(readFileSync(`${dir}/package.json`, 'utf8'));
        if (pkg.name === name) return pkg.version;
      } catch {}
    }
  } catch {}
  return undefined;
}

/** Data points per instrument in one collection, overflow points, and the process-duration counts. */
function summarizeCollection(resourceMetrics) {
  const perInstrument = {};
  let overflowPoints = 0;
  let processCount = 0;
  let processCountOther = 0;
  for (const scope of resourceMetrics.scopeMetrics) {
    for (const metric of scope.metrics) {
      const name = metric.descriptor.name;
      perInstrument[name] = (perInstrument[name] ?? 0) + metric.dataPoints.length;
      for (const p of metric.dataPoints) {
        if (p.attributes['otel.metric.overflow'] !== undefined) overflowPoints++;
        if (name === 'messaging.process.duration') {
          processCount += p.value.count;
          if (p.attributes['queue.job.name'] === '_OTHER') processCountOther += p.value.count;
        }
      }
    }
  }
  return { perInstrument, overflowPoints, processCount, processCountOther };
}

const redisUrl = new URL(REDIS_URL);
const connection = {
  host: redisUrl.hostname,
  port: Number(redisUrl.port || 6379),
  ...(redisUrl.password ? { password: decodeURIComponent(redisUrl.password) } : {}),
  db: redisUrl.pathname.length > 1 ? Number(redisUrl.pathname.slice(1)) : 0,
  maxRetriesPerRequest: null,
};

const queueName = `soak-${process.pid}-${MODE}`;
const queue = new Queue(queueName, { connection, prefix: PREFIX });
let worker;
let completed = 0;
let failed = 0;
const firstFailures = [];
let wake;
const wakeUp = () => {
  const w = wake;
  wake = undefined;
  w?.();
};
const failures = [];
const samples = [];

async function settledMemory() {
  for (let i = 0; i < 3; i++) {
    global.gc();
    await sleep(20);
  }
  global.gc();
  return process.memoryUsage();
}

/** Adds jobs up to `target` (exclusive index), keeping at most MAX_WAITING queued, then waits for the worker to finish them. */
async function runTo(target, phaseStart, names, prefix) {
  while (added < target) {
    while (added - completed - failed >= MAX_WAITING) await new Promise((resolve) => (wake = resolve));
    const n = Math.min(BATCH, target - added);
    const batch = new Array(n);
    for (let k = 0; k < n; k++) {
      const i = added + k - phaseStart;
      batch[k] = { name: `${prefix}-${i % names}`, data: { i }, opts: { removeOnComplete: true, removeOnFail: 1000 } };
    }
    await queue.addBulk(batch);
    added += n;
  }
  while (completed + failed < target) await new Promise((resolve) => (wake = resolve));
}

let added = 0;
const t0 = performance.now();
try {
  await queue.waitUntilReady();
  const leaked = [];
  const job = LEAK > 0 ? async (j) => (leaked.push(`${j.id}:`.padEnd(LEAK, 'x')), 42) : async () => 42;
  worker = new Worker(queueName, job, { connection, prefix: PREFIX, concurrency: CONCURRENCY });
  worker.on('completed', () => {
    completed++;
    if (wake) wakeUp();
  });
  worker.on('failed', (job, err) => {
    failed++;
    if (firstFailures.length < 5) firstFailures.push(`job ${job?.id}: ${err?.stack ?? err}`);
    if (wake) wakeUp();
  });
  worker.on('error', (err) => console.error(`worker error: ${err?.stack ?? err}`));
  await worker.waitUntilReady();

  console.log(`${MODE}: ${2 * JOBS} jobs (${JOBS} with ${NAMES[0]} names, then ${JOBS} with ${NAMES[1]} names), concurrency ${CONCURRENCY}, sample every ${EVERY}${LEAK ? `, planted leak ${LEAK} bytes/job` : ''}; queue ${PREFIX}:${queueName}`);
  console.log(`node ${process.version}, bullmq ${bullmqVersion}${INSTRUMENTED ? `, @opentelemetry/sdk-metrics ${sdkMetricsVersion}` : ''}; ${cpus().length} CPUs, load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  console.log('');
  console.log(`    jobs  names   heap MB   RSS MB   jobs/s${INSTRUMENTED ? '   series (all / largest instrument)        _OTHER jobs' : ''}`);

  let segmentStart = performance.now();
  for (const [phase, names, prefix] of [[1, NAMES[0], 'a'], [2, NAMES[1], 'b']]) {
    const phaseStart = (phase - 1) * JOBS;
    for (let mark = phaseStart + EVERY; mark <= phaseStart + JOBS; mark += EVERY) {
      await runTo(mark, phaseStart, names, prefix);
      const jobsPerSec = Math.round(EVERY / ((performance.now() - segmentStart) / 1000));
      let collection;
      if (INSTRUMENTED) {
        await meterProvider.forceFlush();
        await tracerProvider.forceFlush();
        collection = metricStats.last;
      }
      const mem = await settledMemory();
      const sample = { jobs: mark, phase, names, heapUsed: mem.heapUsed, rss: mem.rss, jobsPerSec };
      if (collection) {
        const entries = Object.entries(collection.perInstrument).sort((x, y) => y[1] - x[1]);
        Object.assign(sample, {
          series: collection.perInstrument,
          seriesTotal: entries.reduce((s, [, n]) => s + n, 0),
          seriesMax: entries[0]?.[1] ?? 0,
          seriesMaxName: entries[0]?.[0] ?? '-',
          overflowPoints: collection.overflowPoints,
          processCount: collection.processCount,
          processCountOther: collection.processCountOther,
          spansProcess: spanStats.process,
        });
      }
      samples.push(sample);
      console.log(
        `${pad(mark, 8)}  ${pad(names, 5)}   ${pad(mb(mem.heapUsed), 7)}  ${pad(mb(mem.rss), 7)}   ${pad(jobsPerSec, 6)}` +
          (collection ? `   ${pad(sample.seriesTotal, 5)} / ${pad(sample.seriesMax, 4)} ${padEnd(sample.seriesMaxName, 28)} ${pad(sample.processCountOther, 7)}` : ''),
      );
      segmentStart = performance.now();
    }
  }
} finally {
  if (worker) await worker.close().catch((err) => console.error(`worker.close: ${err}`));
  await queue.obliterate({ force: true }).catch((err) => console.error(`obliterate ${queueName}: ${err}`));
  await queue.close().catch(() => {});
}
const wallS = (performance.now() - t0) / 1000;

// ---- checks ----------------------------------------------------------------------------------------

const total = 2 * JOBS;
if (completed !== total) failures.push(`${completed} of ${total} jobs completed, ${failed} failed${firstFailures.length ? ': ' + firstFailures.join('\n') : ''}`);

function growth(from, to, what) {
  const delta = to.heapUsed - from.heapUsed;
  const limit = Math.max(GROWTH_MB * MB, GROWTH_SHARE * from.heapUsed);
  const perJob = delta / (to.jobs - from.jobs);
  const grew = delta > limit;
  const line = `${what}: heap after GC ${mb(from.heapUsed)} MB at ${from.jobs} jobs, ${mb(to.heapUsed)} MB at ${to.jobs} jobs: ${delta >= 0 ? '+' : ''}${mb(delta)} MB (${perJob.toFixed(1)} bytes/job; limit +${mb(limit)} MB): ${grew ? 'GROWTH' : 'flat'}`;
  if (grew) failures.push(`${what}: heap grew ${mb(delta)} MB`);
  return line;
}

console.log('');
const phase1 = samples.filter((s) => s.phase === 1);
const phase2 = samples.filter((s) => s.phase === 2);
const lines = [
  growth(phase1[0], phase1.at(-1), `phase 1 (${NAMES[0]} names)`),
  growth(phase2[0], phase2.at(-1), `phase 2 (${NAMES[1]} names)`),
  growth(samples[0], samples.at(-1), 'whole run'),
];
for (const l of lines) console.log(l);
const step = phase2[0].heapUsed - phase1.at(-1).heapUsed;
console.log(`step from the last sample of phase 1 to the first of phase 2 (new names, then the budget is full): ${step >= 0 ? '+' : ''}${mb(step)} MB`);

if (INSTRUMENTED) {
  const last = samples.at(-1);
  const maxSeries = Math.max(...samples.map((s) => s.seriesMax));
  const overflow = samples.reduce((s, x) => s + x.overflowPoints, 0);
  console.log(`series: largest instrument ${maxSeries} data points over all samples (SDK limit ${SERIES_LIMIT}); overflow data points ${overflow}`);
  if (maxSeries >= SERIES_LIMIT - 1) failures.push(`an instrument reached ${maxSeries} series (SDK limit ${SERIES_LIMIT})`);
  if (overflow > 0) failures.push(`${overflow} data points carry otel.metric.overflow`);
  console.log(`messaging.process.duration count over all series: ${last.processCount} (jobs run ${completed}); under queue.job.name _OTHER: ${last.processCountOther}`);
  if (last.processCount !== completed) failures.push(`messaging.process.duration counts ${last.processCount} jobs, ${completed} ran`);
  if (NAMES[1] > 100 && last.processCountOther === 0) failures.push('no job was folded into _OTHER in phase 2');
  console.log(`process spans exported: ${spanStats.process} (jobs run ${completed}); spans exported in all: ${spanStats.exported}; metric exports: ${metricStats.exports}`);
  if (spanStats.process !== completed) failures.push(`${completed - spanStats.process} process spans not exported (BatchSpanProcessor queue full?)`);
  console.log(`diag warnings and errors: ${diagMessages.length}`);

  // Series per instrument at the end of each phase.
  const endOf = [samples.find((s) => s.jobs === JOBS), last];
  const names = Object.keys(last.series).sort();
  console.log('');
  console.log(`${padEnd('instrument', 40)} ${pad(`series@${JOBS}`, 14)} ${pad(`series@${total}`, 14)}`);
  for (const n of names) console.log(`${padEnd(n, 40)} ${pad(endOf[0].series[n] ?? 0, 14)} ${pad(endOf[1].series[n] ?? 0, 14)}`);

  await tracerProvider.shutdown();
  await meterProvider.shutdown();
}

console.log('');
console.log(`${total} jobs in ${wallS.toFixed(0)} s (${Math.round(total / wallS)} jobs/s); checks: ${failures.length === 0 ? 'passed' : 'FAILED'}`);
for (const f of failures) console.log(`  FAILED: ${f}`);

if (args.out) {
  writeFileSync(
    args.out,
    JSON.stringify({ mode: MODE, jobs: JOBS, every: EVERY, concurrency: CONCURRENCY, names: NAMES, bullmqVersion, sdkMetricsVersion, node: process.version, wallS, jobsPerSec: Math.round(total / wallS), samples, failures, diag: diagMessages }, null, 2),
  );
}
process.exitCode = failures.length === 0 ? 0 : 1;
