// Cost of one metric collection while many jobs are running.
//
// Run: `npm run bench:collect` (builds, then runs this file), `npm run bench` (runs it after
// bench/overhead.mjs), or `node bench/collection.mjs` after a build. Needs no Redis.
//
// Defaults: N = 10,000 and N = 100,000 running attempts; 5 warm-up collections, then 50 timed ones
// per N; a few seconds in all.
//
// Environment:
//   BENCH_COLLECT_SIZES    comma-separated numbers of running attempts (default 10000,100000)
//   BENCH_COLLECT_WARMUP   warm-up collections per size (default 5)
//   BENCH_COLLECT_SAMPLES  timed collections per size (default 50)
//
// Uses the built core directly (dist/cjs), no queue library and no tracing (setTracer is never
// called, so no spans are made): a QueueTelemetry with default options, its meter from an
// sdk-metrics MeterProvider whose only reader is a bare MetricReader the bench calls collect() on,
// and t.start() so per-job resource attribution is on (as it is by default when enabled). For each
// N, a fresh telemetry and provider start N attempts spread over 10 queues and 100 job names
// (100 series), none ended, then `await reader.collect()` is timed with performance.now(). After
// that every attempt is ended (outcome completed) and one more collection is timed.
// The results are printed and merged into bench/last-run.json under the `collection` key (the
// file's other keys, written by bench/overhead.mjs, are kept; the file is created if missing).

import { createRequire } from 'node:module';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { intEnv, keepDiag, median, round, runBench } from './common.mjs';

const require = createRequire(import.meta.url);
const startedAt = performance.now();

const SIZES = listEnv('BENCH_COLLECT_SIZES', [10_000, 100_000]);
const WARMUP = intEnv('BENCH_COLLECT_WARMUP', 5, 0);
const SAMPLES = intEnv('BENCH_COLLECT_SAMPLES', 50, 1);
const TARGET = { runningJobs: 10_000, maxMedianMs: 5 };

function listEnv(name, fallback) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const list = raw.split(',').map((x) => Number(x.trim()));
  if (list.some((n) => !Number.isInteger(n) || n < 1)) throw new Error(`${name} must be integers >= 1, got ${JSON.stringify(raw)}`);
  return list;
}

const api = require('@opentelemetry/api');
const { MeterProvider, MetricReader } = require('@opentelemetry/sdk-metrics');
const { QueueTelemetry } = require('../dist/cjs/core/telemetry.js');
const { resolveConfig } = require('../dist/cjs/config.js');
// sdk-metrics does not export its package.json; read it from the resolved package folder.
const sdkMetricsVersion = readPackageVersion('@opentelemetry/sdk-metrics');

function readPackageVersion(name) {
  try {
    let dir = require.resolve(name);
    for (;;) {
      const next = dir.slice(0, dir.lastIndexOf('/'));
      if (next === dir || next === '') return undefined;
      dir = next;
      const file = `${dir}/package.json`;
      if (existsSync(file)) {
        const pkg = JSON.parse(readFileSync(file, 'utf8'));
        if (pkg.name === name) return pkg.version;
      }
    }
  } catch {
    return undefined;
  }
}

// Anything reported at WARN or above is counted and shown.
const diagMessages = keepDiag();

class Reader extends MetricReader {
  async onShutdown() {}
  async onForceFlush() {}
}

function quantile(xs, q) {
  // Nearest rank: the smallest value with at least q of the samples at or below it.
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
}

/** Data points in one collect() result, and the collection errors it reports. */
function countPoints(result) {
  let points = 0;
  const byMetric = {};
  for (const scope of result.resourceMetrics.scopeMetrics) {
    for (const metric of scope.metrics) {
      points += metric.dataPoints.length;
      byMetric[metric.descriptor.name] = metric.dataPoints.length;
    }
  }
  return { points, byMetric, errors: result.errors.length };
}

async function timedCollect(reader) {
  const t0 = performance.now();
  const result = await reader.collect();
  const ms = performance.now() - t0;
  return { ms, ...countPoints(result) };
}

async function measure(n) {
  const reader = new Reader();
  const meterProvider = new MeterProvider({ readers: [reader] });
  const t = new QueueTelemetry('bullmq', resolveConfig({}), api.diag);
  t.setMeter(meterProvider.getMeter('bench'));
  t.start();
  try {
    if (!t.resourcesOn) throw new Error('t.start() did not turn per-job resource attribution on');
    const attempts = new Array(n);
    const s0 = performance.now();
    for (let i = 0; i < n; i++) {
      attempts[i] = t.startAttempt(() => ({
        queue: 'q' + (i % 10),
        jobName: 'job-' + (i % 100),
        jobId: String(i),
        attempt: 1,
        readyAt: Date.now(),
        carrier: undefined,
        traced: false,
        job: {},
      }));
      if (attempts[i] === undefined) throw new Error(`startAttempt returned undefined for attempt ${i}`);
    }
    const startMs = performance.now() - s0;

    for (let i = 0; i < WARMUP; i++) await reader.collect();
    const samples = [];
    let last;
    for (let i = 0; i < SAMPLES; i++) {
      last = await timedCollect(reader);
      samples.push(last.ms);
    }
    // Every attempt is still running: the gauge of running jobs must add up to n.
    const check = await reader.collect();
    let active = 0;
    for (const scope of check.resourceMetrics.scopeMetrics) {
      for (const metric of scope.metrics) {
        if (metric.descriptor.name === 'queue.job.active') for (const p of metric.dataPoints) active += p.value;
      }
    }
    if (active !== n) throw new Error(`queue.job.active sums to ${active} with ${n} running attempts`);

    const e0 = performance.now();
    for (const a of attempts) t.endAttempt(a, { outcome: 'completed', attemptsMade: 1 });
    const endMs = performance.now() - e0;
    const after = await timedCollect(reader);

    return {
      runningJobs: n,
      samples: SAMPLES,
      warmup: WARMUP,
      medianMs: round(median(samples), 3),
      p95Ms: round(quantile(samples, 0.95), 3),
      minMs: round(Math.min(...samples), 3),
      maxMs: round(Math.max(...samples), 3),
      dataPoints: last.points,
      dataPointsByMetric: last.byMetric,
      collectionErrors: last.errors,
      startAttemptsUsPerJob: round((startMs * 1000) / n, 3),
      endAttemptsUsPerJob: round((endMs * 1000) / n, 3),
      afterAllEnded: { ms: round(after.ms, 3), dataPoints: after.points, dataPointsByMetric: after.byMetric, collectionErrors: after.errors },
      samplesMs: samples.map((x) => round(x, 3)),
    };
  } finally {
    t.stop();
    await meterProvider.shutdown();
  }
}

async function main() {
  const env = {
    node: process.version,
    sdkMetrics: sdkMetricsVersion,
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model,
    loadAvgAtStart: loadavg().map((x) => round(x, 2)),
  };
  console.log(`queue-otel collection bench: Node ${env.node}, sdk-metrics ${env.sdkMetrics}, ${env.cpus} CPUs (${env.cpuModel})`);
  console.log(
    `running attempts over 10 queues x 10 job names each (100 series), resource attribution on, no tracing; ` +
      `${WARMUP} warm-up + ${SAMPLES} timed collections per size`,
  );
  const results = [];
  for (const n of SIZES) {
    const r = await measure(n);
    results.push(r);
    console.log(
      `${String(n).padStart(7)} running jobs: collection median ${r.medianMs.toFixed(3)} ms, p95 ${r.p95Ms.toFixed(3)} ms ` +
        `(min ${r.minMs.toFixed(3)}, max ${r.maxMs.toFixed(3)}), ${r.dataPoints} data points` +
        `${r.collectionErrors ? `, ${r.collectionErrors} collection errors` : ''}; ` +
        `start ${r.startAttemptsUsPerJob} µs/attempt, end ${r.endAttemptsUsPerJob} µs/attempt`,
    );
    console.log(
      `${''.padStart(7)} after ending all ${n}: one collection ${r.afterAllEnded.ms.toFixed(3)} ms, ${r.afterAllEnded.dataPoints} data points` +
        `${r.afterAllEnded.collectionErrors ? `, ${r.afterAllEnded.collectionErrors} collection errors` : ''}`,
    );
  }
  const atTarget = results.find((r) => r.runningJobs === TARGET.runningJobs);
  const targetPass = atTarget === undefined ? undefined : atTarget.medianMs < TARGET.maxMedianMs;
  console.log(
    `target: collection with ${TARGET.runningJobs.toLocaleString('en-US')} running jobs under ${TARGET.maxMedianMs} ms (median): ` +
      (atTarget === undefined ? 'not measured (size not in BENCH_COLLECT_SIZES)' : `${atTarget.medianMs.toFixed(3)} ms ${targetPass ? 'PASS' : 'MISS'}`),
  );
  env.loadAvgAtEnd = loadavg().map((x) => round(x, 2));
  if (diagMessages.length > 0) console.log(`diag warnings/errors: ${diagMessages.length} (see stderr)`);

  const collection = {
    date: new Date().toISOString(),
    env,
    target: { ...TARGET, pass: targetPass },
    results,
    diagMessages,
    totalSeconds: round((performance.now() - startedAt) / 1000, 1),
  };
  const file = fileURLToPath(new URL('./last-run.json', import.meta.url));
  let existing = {};
  if (existsSync(file)) {
    try {
      existing = JSON.parse(readFileSync(file, 'utf8'));
    } catch (err) {
      console.error(`bench/last-run.json was not valid JSON (${err.message}); writing it anew`);
    }
  }
  writeFileSync(file, JSON.stringify({ ...existing, collection }, null, 2) + '\n');
  console.log(`written to ${file} under "collection"; total ${collection.totalSeconds} s`);
}

await runBench(main);
