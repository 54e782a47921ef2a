// Cost of the producer side of queue-otel's BullMQ instrumentation, and of the per-job `create`
// spans of a bulk add (option `createSpans`), in three modes:
//   uninstrumented        instrumentation.disable()
//   createSpans false     setConfig({ createSpans: false }) + enable(): one `send` span per
//                         addBulk call, its context carried by every job of the call
//   createSpans true      setConfig({}) + enable() (the default): the `send` span, and a `create`
//                         span per job (up to 128 per call) whose context the job carries
//
// Run: `node bench/producer.mjs` after a build (`npm run build`). Needs Redis
// (BENCH_REDIS_URL, default redis://127.0.0.1:6379).
// `node bench/producer.mjs --instructions` runs each mode in a process of its own under valgrind's
// callgrind and counts the instructions of one counted round (main thread and all threads), a
// figure that does not move with the load of the machine (needs valgrind).
//
// Each round: a fresh queue, then N jobs added with Queue.addBulk in calls of BENCH_BATCH jobs
// (default 100, so every job of a call gets a create span), one call at a time; timed from the
// first call to the last call's resolution: wall time and process CPU (process.cpuUsage, all
// threads). Then the queue is obliterated. Rounds run in blocks of one round per mode, cycling
// through the 6 orders of the three modes. The SDK is real: TracerProvider + BatchSpanProcessor,
// MeterProvider + PeriodicExportingMetricReader (1 s), AsyncLocalStorage context manager, W3C
// propagator; the exporters drop everything.
//
// Environment:
//   BENCH_JOBS         jobs per round (default 10000)
//   BENCH_BATCH        jobs per addBulk call (default 100)
//   BENCH_ROUNDS       measured rounds per mode (default 12), after one discarded warm-up of each
//   BENCH_REDIS_URL    Redis to use

import { createRequire } from 'node:module';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { benchSdk, callgrindControl, callgrindInstructions, intEnv, median, round, runBench } from './common.mjs';

const require = createRequire(import.meta.url);
const run = promisify(execFile);
const self = fileURLToPath(import.meta.url);

const JOBS = intEnv('BENCH_JOBS', 10000);
const BATCH = intEnv('BENCH_BATCH', 100);
const ROUNDS = intEnv('BENCH_ROUNDS', 12);
const REDIS_URL = process.env.BENCH_REDIS_URL || 'redis://127.0.0.1:6379';
const CALLGRIND_MODE = process.env.BENCH_CALLGRIND_MODE;
const EXPORT_INTERVAL_MS = CALLGRIND_MODE ? 600_000 : 1000;
const PREFIX = 'qotel-bench';

const MODES = [
  { key: 'uninstrumented', label: 'uninstrumented', instrumented: false },
  { key: 'createSpansOff', label: 'createSpans false', instrumented: true, config: { createSpans: false } },
  { key: 'createSpansOn', label: 'createSpans true (default)', instrumented: true, config: {} },
];

// ---- --instructions: each mode under callgrind, in a process of its own ------------------------

async function instructions() {
  await run('valgrind', ['--version']).catch(() => {
    console.error('bench/producer.mjs --instructions needs valgrind (apt-get install valgrind)');
    process.exit(2);
  });
  const dir = mkdtempSync(join(tmpdir(), 'queue-otel-producer-callgrind-'));
  const results = {};
  try {
    // Two at a time on a 2-CPU machine.
    const count = async (mode) => {
      const out = join(dir, `cg.${mode.key}`);
      const { stdout } = await run(
        'valgrind',
        ['--tool=callgrind', '--separate-threads=yes', `--callgrind-out-file=${out}`, process.execPath, self],
        { env: { ...process.env, BENCH_CALLGRIND_MODE: mode.key }, maxBuffer: 64 * 1024 * 1024 },
      );
      const line = stdout.split('\n').find((l) => l.startsWith('{"callgrindRound"'));
      if (!line) throw new Error(`${mode.key}: no result:\n${stdout}`);
      const dumps = readdirSync(dir).filter((f) => f.startsWith(`cg.${mode.key}.1-`));
      if (dumps.length === 0) throw new Error(`${mode.key}: no callgrind dump`);
      const main = dumps.filter((f) => f.endsWith('-01')).reduce((s, f) => s + callgrindInstructions(join(dir, f)), 0);
      const all = dumps.reduce((s, f) => s + callgrindInstructions(join(dir, f)), 0);
      results[mode.key] = { label: mode.label, ...JSON.parse(line).callgrindRound, mainPerJob: Math.round(main / JOBS), allThreadsPerJob: Math.round(all / JOBS) };
    };
    await Promise.all(MODES.slice(0, 2).map(count));
    await count(MODES[2]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const base = results.uninstrumented;
  console.log(`instructions per job added, ${JOBS} jobs in addBulk calls of ${BATCH} (Node ${process.version})`);
  for (const m of MODES) {
    const r = results[m.key];
    console.log(
      `${r.label.padEnd(28)} main thread ${r.mainPerJob.toLocaleString('en-US').padStart(9)} (+${(r.mainPerJob - base.mainPerJob).toLocaleString('en-US')})  ` +
        `all threads ${r.allThreadsPerJob.toLocaleString('en-US').padStart(9)} (+${(r.allThreadsPerJob - base.allThreadsPerJob).toLocaleString('en-US')})  spans/job ${r.spansPerJob}`,
    );
  }
  const file = fileURLToPath(new URL('./producer-instructions-last-run.json', import.meta.url));
  writeFileSync(file, JSON.stringify({ date: new Date().toISOString(), node: process.version, jobs: JOBS, batch: BATCH, results }, null, 2) + '\n');
}

if (process.argv.includes('--instructions')) {
  await instructions();
  process.exit(0);
}

// ---- the SDK, the instrumentation, bullmq ----------------------------------------------------------

const sdk = benchSdk({ exportIntervalMs: EXPORT_INTERVAL_MS, exportTimeoutMs: 1000 });
const { tracerProvider, meterProvider, spanProcessor, diagMessages } = sdk;

const { BullMQInstrumentation } = require('../dist/cjs/index.js');
const instrumentation = new BullMQInstrumentation({});
instrumentation.setTracerProvider(tracerProvider);
instrumentation.setMeterProvider(meterProvider);

const { Queue } = require('bullmq');
const bullmqVersion = require('bullmq/package.json').version;

const redisUrl = new URL(REDIS_URL);
const connection = {
  host: redisUrl.hostname,
  port: Number(redisUrl.port || 6379),
  ...(redisUrl.password ? { password: decodeURIComponent(redisUrl.password) } : {}),
  db: redisUrl.pathname.length > 1 ? Number(redisUrl.pathname.slice(1)) : 0,
  maxRetriesPerRequest: null,
};

function setMode(mode) {
  if (mode.instrumented) {
    instrumentation.setConfig(mode.config);
    instrumentation.enable();
  } else instrumentation.disable();
  if (Boolean(Queue.prototype.addBulk?.__wrapped) !== mode.instrumented) {
    throw new Error(`[${mode.label}] Queue.prototype.addBulk is ${mode.instrumented ? 'not ' : ''}patched`);
  }
}

let seq = 0;
async function runRound(mode, counted = false) {
  const name = `producer-${process.pid}-${++seq}-${mode.key}`;
  setMode(mode);
  const queue = new Queue(name, { connection, prefix: PREFIX });
  try {
    await queue.waitUntilReady();
    const batches = [];
    for (let i = 0; i < JOBS; i += BATCH) {
      const batch = [];
      for (let j = i; j < Math.min(JOBS, i + BATCH); j++) batch.push({ name: 'noop', data: { i: j } });
      batches.push(batch);
    }
    await spanProcessor.forceFlush();
    const spansBefore = sdk.spans.exported;
    if (counted) await callgrindControl('--zero');
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    for (const batch of batches) await queue.addBulk(batch);
    const wallMs = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    if (counted) await callgrindControl('--dump');
    await spanProcessor.forceFlush();
    const count = await queue.count();
    if (count !== JOBS) throw new Error(`[${mode.label}] ${count} jobs in the queue, expected ${JOBS}`);
    return {
      mode: mode.key,
      wallMs: round(wallMs, 1),
      jobsPerSec: round(JOBS / (wallMs / 1000), 0),
      cpuUsPerJob: round((cpu.user + cpu.system) / JOBS, 2),
      spansPerJob: round((sdk.spans.exported - spansBefore) / JOBS, 3),
    };
  } finally {
    setMode(MODES[0]);
    await queue.obliterate({ force: true }).catch((err) => console.error(`obliterate ${name}: ${err}`));
    await queue.close().catch(() => {});
  }
}

async function main() {
  if (CALLGRIND_MODE) {
    const mode = MODES.find((m) => m.key === CALLGRIND_MODE);
    if (mode === undefined) throw new Error(`BENCH_CALLGRIND_MODE must be one of ${MODES.map((m) => m.key).join(', ')}`);
    await runRound(mode);
    const r = await runRound(mode, true);
    console.log(JSON.stringify({ callgrindRound: { mode: mode.key, jobs: JOBS, batch: BATCH, spansPerJob: r.spansPerJob } }));
    return;
  }
  const loadAtStart = loadavg().map((x) => round(x, 2));
  console.log(`queue-otel producer bench: Node ${process.version}, bullmq ${bullmqVersion}, ${cpus().length} CPUs; ${JOBS} jobs per round in addBulk calls of ${BATCH}, ${ROUNDS} rounds per mode after 1 warm-up each`);
  for (const mode of MODES) {
    const r = await runRound(mode);
    console.log(`warm-up   ${mode.label.padEnd(28)} ${String(r.jobsPerSec).padStart(7)} jobs/s ${r.cpuUsPerJob.toFixed(2).padStart(7)} µs CPU/job (discarded)`);
  }
  const [A, B, C] = MODES;
  const orders = [[A, B, C], [B, C, A], [C, A, B], [A, C, B], [C, B, A], [B, A, C]];
  const results = [];
  const blocks = [];
  for (let b = 0; b < ROUNDS; b++) {
    const block = {};
    for (const mode of orders[b % orders.length]) {
      const r = await runRound(mode);
      results.push(r);
      block[mode.key] = r;
      console.log(`round ${String(results.length).padStart(2)}  ${mode.label.padEnd(28)} ${String(r.jobsPerSec).padStart(7)} jobs/s ${r.cpuUsPerJob.toFixed(2).padStart(7)} µs CPU/job  ${r.spansPerJob} spans/job`);
    }
    blocks.push(block);
  }
  const summary = {};
  for (const mode of MODES) {
    const rs = results.filter((r) => r.mode === mode.key);
    summary[mode.key] = {
      medianCpuUsPerJob: round(median(rs.map((r) => r.cpuUsPerJob)), 2),
      minCpuUsPerJob: Math.min(...rs.map((r) => r.cpuUsPerJob)),
      maxCpuUsPerJob: Math.max(...rs.map((r) => r.cpuUsPerJob)),
      medianJobsPerSec: round(median(rs.map((r) => r.jobsPerSec)), 0),
      spansPerJob: median(rs.map((r) => r.spansPerJob)),
    };
  }
  const paired = (a, b, k) => round(median(blocks.map((bl) => bl[a][k] - bl[b][k])), 2);
  const pairedRatio = (a, b) => round(median(blocks.map((bl) => bl[a].jobsPerSec / bl[b].jobsPerSec)), 3);
  const comparisons = {
    createSpansOffVsUninstrumented: { addedCpuUsPerJob: paired('createSpansOff', 'uninstrumented', 'cpuUsPerJob'), throughputRatio: pairedRatio('createSpansOff', 'uninstrumented') },
    createSpansOnVsUninstrumented: { addedCpuUsPerJob: paired('createSpansOn', 'uninstrumented', 'cpuUsPerJob'), throughputRatio: pairedRatio('createSpansOn', 'uninstrumented') },
    createSpansOnVsOff: { addedCpuUsPerJob: paired('createSpansOn', 'createSpansOff', 'cpuUsPerJob'), throughputRatio: pairedRatio('createSpansOn', 'createSpansOff') },
  };
  console.log('');
  for (const mode of MODES) {
    const s = summary[mode.key];
    console.log(`${mode.label.padEnd(28)} median ${s.medianCpuUsPerJob.toFixed(2)} µs CPU/job (${s.minCpuUsPerJob.toFixed(2)}-${s.maxCpuUsPerJob.toFixed(2)}), ${s.medianJobsPerSec} jobs/s, ${s.spansPerJob} spans/job`);
  }
  console.log('paired (median over blocks of the within-block difference / ratio):');
  for (const [k, c] of Object.entries(comparisons)) console.log(`  ${k}: ${c.addedCpuUsPerJob.toFixed(2)} µs CPU/job, throughput ratio ${c.throughputRatio.toFixed(3)}`);
  const loadAtEnd = loadavg().map((x) => round(x, 2));
  console.log(`load average at start ${loadAtStart.join(' ')}, at end ${loadAtEnd.join(' ')}`);
  if (diagMessages.length > 0) console.log(`diag warnings/errors: ${diagMessages.length} (see stderr)`);
  const file = fileURLToPath(new URL('./producer-last-run.json', import.meta.url));
  writeFileSync(
    file,
    JSON.stringify({ date: new Date().toISOString(), node: process.version, bullmq: bullmqVersion, jobs: JOBS, batch: BATCH, loadAtStart, loadAtEnd, summary, comparisons, rounds: results, diagMessages }, null, 2) + '\n',
  );
  console.log(`written to ${file}`);
}

await runBench(main, async () => {
  try {
    instrumentation.disable();
  } catch {}
  await sdk.shutdown();
});
