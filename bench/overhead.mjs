// Overhead of queue-otel's BullMQ instrumentation on a worker running no-op jobs, in three modes:
//   uninstrumented                instrumentation.disable()
//   instrumented, resources off   setConfig({ jobCpu: false, jobMemory: false }) + enable()
//                                 (spans and metrics, no per-job CPU/memory, no async hook)
//   instrumented, everything on   setConfig({}) + enable() (the defaults: jobCpu and jobMemory on)
//   hand-written SDK floor        disable(); the processor makes one span and three histogram
//                                 records per job on the SDK itself (see floorProcessor)
// (setConfig before enable(): see setMode for why.)
//
// Run: `npm run bench` (builds, then runs this file and bench/collection.mjs), or
// `node bench/overhead.mjs` after a build. Needs Redis (BENCH_REDIS_URL, default redis://127.0.0.1:6379).
//
// Defaults: 20000 jobs per round, concurrency 50, 12 measured rounds per mode (48 in all) after one
// discarded warm-up round of each mode; about 3 minutes on a 2-CPU machine.
//
// Environment:
//   BENCH_JOBS         jobs per round (default 20000)
//   BENCH_ROUNDS       measured rounds per mode (default 12), after one discarded warm-up of each
//   BENCH_CONCURRENCY  worker concurrency (default 50)
//   BENCH_REDIS_URL    Redis to use (default redis://127.0.0.1:6379)
//   BENCH_CALLGRIND_MODE  set by bench/instructions.mjs, which runs this file under valgrind's
//                      callgrind: one warm-up and BENCH_CALLGRIND_ROUNDS measured rounds of that
//                      mode only, each between callgrind_control's zero and a dump (and, with
//                      BENCH_CALLGRIND_GC=1, after a full garbage collection); periodic export every 10 minutes
//                      instead of every second, so only per-job work is counted
//   BENCH_PROFILE_MODE one mode only (a key of MODES, or `cpuOnly`: jobMemory false), a warm-up and BENCH_ROUNDS rounds, for
//                      `node --cpu-prof bench/overhead.mjs`
//   BENCH_PRODUCER_CONTEXT=1  add the jobs of instrumented rounds with the instrumentation on, so
//                      they carry the producer's trace context (the process span gets a link).
//                      Default off: jobs are always added uninstrumented; adding is never timed.
//
// Each round: addBulk N jobs to a fresh queue (not timed), start a Worker (autorun off, waited
// until ready), then time from worker.run() until the N-th 'completed' event: wall time, process
// CPU time (process.cpuUsage, user + system, all threads of this process) and Redis commands
// (INFO commandstats, summed over every command except INFO; server-wide, so other clients of the
// same Redis add noise; commands run inside BullMQ's Lua scripts are counted too, so the script
// invocations are also shown apart). Then the worker is closed and the queue obliterated.
// Rounds run in blocks of four, one round of each mode, the blocks cycling through the four orders
// of a balanced Latin square (ABDC, BCAD, CDBA, DACB: each mode once in each position, and each
// mode right after each other one once), so slow drift and position within a block hit every mode
// alike. The paired figures compare the rounds of one block.
// The instrumented modes have a real SDK: TracerProvider + BatchSpanProcessor, MeterProvider +
// PeriodicExportingMetricReader (1 s), AsyncLocalStorage context manager, W3C propagator; the
// exporters drop everything. Results are printed and written to bench/last-run.json (replacing it;
// bench/collection.mjs, run after this by `npm run bench`, adds its results under `collection`).

import { createRequire } from 'node:module';
import { writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { benchSdk, callgrindControl, intEnv, median, round, runBench } from './common.mjs';

const require = createRequire(import.meta.url);
const startedAt = performance.now();

const JOBS = intEnv('BENCH_JOBS', 20000);
const ROUNDS = intEnv('BENCH_ROUNDS', 12);
const CONCURRENCY = intEnv('BENCH_CONCURRENCY', 50);
const REDIS_URL = process.env.BENCH_REDIS_URL || 'redis://127.0.0.1:6379';
const PRODUCER_CONTEXT = process.env.BENCH_PRODUCER_CONTEXT === '1';
const CALLGRIND_MODE = process.env.BENCH_CALLGRIND_MODE;
const PROFILE_MODE = process.env.BENCH_PROFILE_MODE;
/** Counted rounds under callgrind, each dumped apart (bench/instructions.mjs reports their median). */
const CALLGRIND_ROUNDS = intEnv('BENCH_CALLGRIND_ROUNDS', 1);
const CALLGRIND_GC = process.env.BENCH_CALLGRIND_GC === '1';
/** Under callgrind a second lasts about 50 times longer: periodic export would count as per-job work. */
const EXPORT_INTERVAL_MS = CALLGRIND_MODE ? 600_000 : 1000;
/** Under callgrind on a loaded 2-CPU machine a round of 6,000 jobs can take over 2 minutes. */
const ROUND_TIMEOUT_MS = CALLGRIND_MODE ? 1_800_000 : 120_000;
const PREFIX = 'qotel-bench';

/** The three modes, in the order they are reported. `config` is what setConfig gets on enable. */
const MODES = [
  { key: 'uninstrumented', label: 'uninstrumented', instrumented: false, resources: false },
  {
    key: 'resourcesOff',
    label: 'instrumented, resources off',
    instrumented: true,
    resources: false,
    config: { jobCpu: false, jobMemory: false },
  },
  { key: 'everythingOn', label: 'instrumented, everything on', instrumented: true, resources: true, config: {} },
  // Not queue-otel: the processor itself makes the telemetry the resources-off mode makes per job
  // (one span with the same attributes, three histogram records), straight on the SDK. Its cost is
  // the floor for any instrumentation with this schema: the rest of an instrumented mode's cost is
  // queue-otel's own.
  { key: 'sdkFloor', label: 'hand-written SDK floor', instrumented: false, resources: false, floor: true },
];
/**
 * Modes counted only one at a time (BENCH_CALLGRIND_MODE, BENCH_PROFILE_MODE), not in the rotated
 * rounds: how much of everything on is the heap readings (`jobMemory`).
 */
const SINGLE_MODES = [
  { key: 'cpuOnly', label: 'instrumented, CPU attribution only', instrumented: true, resources: true, config: { jobMemory: false } },
];
const UNINSTRUMENTED = MODES[0];
/** Targets for each instrumented mode against uninstrumented (median-based figures decide). */
const TARGETS = {
  resourcesOff: { maxAddedCpuUsPerJob: 25, minThroughputRatio: 0.85 },
  everythingOn: { maxAddedCpuUsPerJob: 40, minThroughputRatio: 0.8 },
};

// ---- OpenTelemetry SDK (bench/common.mjs: CommonJS, the same copies the built package resolves) ---

const sdk = benchSdk({ exportIntervalMs: EXPORT_INTERVAL_MS, exportTimeoutMs: 1000, spansByName: true });
const { api, tracerProvider, meterProvider, spanProcessor, diagMessages, spans: spanStats } = sdk;

// ---- the instrumentation, then bullmq (require-in-the-middle patches it as it loads) -----------

const { BullMQInstrumentation } = require('../dist/cjs/index.js');
const instrumentation = new BullMQInstrumentation({});
instrumentation.setTracerProvider(tracerProvider);
instrumentation.setMeterProvider(meterProvider);

const bullmq = require('bullmq');
const { Queue, Worker } = bullmq;
const bullmqVersion = require('bullmq/package.json').version;
const Redis = require('ioredis');

const redisUrl = new URL(REDIS_URL);
const connection = {
  host: redisUrl.hostname,
  port: Number(redisUrl.port || 6379),
  ...(redisUrl.password ? { password: decodeURIComponent(redisUrl.password) } : {}),
  ...(redisUrl.username ? { username: decodeURIComponent(redisUrl.username) } : {}),
  db: redisUrl.pathname.length > 1 ? Number(redisUrl.pathname.slice(1)) : 0,
  maxRetriesPerRequest: null,
};
const redis = new Redis({ ...connection, maxRetriesPerRequest: 3 });

function isPatched() {
  return Boolean(Worker.prototype.processJob?.__wrapped);
}

/** Whether per-job resource attribution (the async hook) is on; reads the core's own flag. */
function resourcesOn() {
  return Boolean(instrumentation.telemetry?.resourcesOn);
}

function setMode(mode) {
  if (mode.instrumented) {
    // setConfig first, then enable(): enable() (re)starts resource attribution from the current
    // options. The other order (enable(); setConfig({})) leaves attribution off when the previous
    // options had it off: QueueTelemetry.setConfig only restarts attribution that is already
    // running, so once jobCpu/jobMemory were turned off, setConfig({}) alone does not turn them
    // back on (src/core/telemetry.ts; reported, not worked around in src). The check below
    // makes sure each mode really is what it says.
    instrumentation.setConfig(mode.config);
    instrumentation.enable();
  } else {
    instrumentation.disable();
  }
  if (isPatched() !== mode.instrumented) {
    throw new Error(
      `[${mode.label}] instrumentation.${mode.instrumented ? 'enable' : 'disable'}() did not ` +
        `${mode.instrumented ? 'patch' : 'unpatch'} Worker.prototype.processJob`,
    );
  }
  if (resourcesOn() !== mode.resources) {
    throw new Error(`[${mode.label}] per-job resource attribution is ${resourcesOn() ? 'on' : 'off'}, expected ${mode.resources ? 'on' : 'off'}`);
  }
}

/** Calls of each Redis command except INFO (so our own probes do not count). */
async function redisCommandCalls() {
  const text = await redis.info('commandstats');
  const calls = new Map();
  for (const line of text.split('\n')) {
    const m = /^cmdstat_([^:]+):calls=(\d+)/.exec(line.trim());
    if (m && m[1] !== 'info') calls.set(m[1], Number(m[2]));
  }
  return calls;
}

/**
 * Per-job deltas between two commandstats snapshots. Redis counts the commands a Lua script runs
 * (redis.call) as well as the EVALSHA itself, so `total` is commands executed, not round trips;
 * `scripts` counts the script invocations (evalsha/eval/fcall and their _ro forms) alone.
 */
function redisDelta(before, after) {
  let total = 0;
  let scripts = 0;
  const byCommand = {};
  for (const [cmd, n] of after) {
    const d = n - (before.get(cmd) ?? 0);
    if (d <= 0) continue;
    total += d;
    if (/^(evalsha|eval|fcall)(_ro)?$/.test(cmd)) scripts += d;
    byCommand[cmd] = round(d / JOBS, 3);
  }
  const sorted = Object.fromEntries(Object.entries(byCommand).sort((a, b) => b[1] - a[1]));
  return { perJob: round(total / JOBS, 3), scriptsPerJob: round(scripts / JOBS, 3), byCommand: sorted };
}

// ---- the hand-written floor ----------------------------------------------------------------------

const semconv = require('../dist/cjs/semconv.js');
const floorTracer = tracerProvider.getTracer('bench-sdk-floor');
const floorMeter = meterProvider.getMeter('bench-sdk-floor');
const floorSeconds = { unit: 's', advice: { explicitBucketBoundaries: semconv.DURATION_BUCKETS_S } };
const floorInstruments = {
  wait: floorMeter.createHistogram(semconv.METRIC_QUEUE_JOB_WAIT_DURATION, floorSeconds),
  process: floorMeter.createHistogram(semconv.METRIC_MESSAGING_PROCESS_DURATION, floorSeconds),
  attempts: floorMeter.createHistogram(semconv.METRIC_QUEUE_JOB_ATTEMPTS, {
    unit: '{attempt}',
    advice: { explicitBucketBoundaries: semconv.ATTEMPT_BUCKETS },
  }),
};

/**
 * A processor that makes, on the SDK itself, the per-job telemetry of the resources-off mode: the
 * same span (kind, name, attributes, run in its context, outcome set at the end) and the same
 * three histogram records with the same attribute sets, built once per queue as queue-otel does.
 */
function floorProcessor(queue) {
  const series = {
    [semconv.ATTR_MESSAGING_SYSTEM]: 'bullmq',
    [semconv.ATTR_MESSAGING_DESTINATION_NAME]: queue,
    [semconv.ATTR_QUEUE_JOB_NAME]: 'noop',
  };
  const completed = {
    ...series,
    [semconv.ATTR_MESSAGING_OPERATION_NAME]: semconv.OPERATION_PROCESS,
    [semconv.ATTR_QUEUE_JOB_OUTCOME]: 'completed',
  };
  const noop = async () => {};
  return async (job) => {
    const started = performance.now();
    const waitS = Math.max(0, Date.now() - job.timestamp) / 1000;
    floorInstruments.wait.record(waitS, series);
    const span = floorTracer.startSpan(
      `${semconv.OPERATION_PROCESS} ${queue}`,
      {
        kind: api.SpanKind.CONSUMER,
        attributes: {
          [semconv.ATTR_MESSAGING_SYSTEM]: 'bullmq',
          [semconv.ATTR_MESSAGING_DESTINATION_NAME]: queue,
          [semconv.ATTR_MESSAGING_OPERATION_NAME]: semconv.OPERATION_PROCESS,
          [semconv.ATTR_MESSAGING_OPERATION_TYPE]: semconv.OPERATION_PROCESS,
          [semconv.ATTR_QUEUE_JOB_ATTEMPT]: job.attemptsMade + 1,
          [semconv.ATTR_QUEUE_JOB_NAME]: job.name,
          [semconv.ATTR_MESSAGING_MESSAGE_ID]: job.id,
          [semconv.ATTR_QUEUE_JOB_WAIT_DURATION]: waitS,
        },
      },
      api.ROOT_CONTEXT,
    );
    await api.context.with(api.trace.setSpan(api.ROOT_CONTEXT, span), noop);
    span.setAttribute(semconv.ATTR_QUEUE_JOB_OUTCOME, 'completed');
    span.end();
    floorInstruments.process.record((performance.now() - started) / 1000, completed);
    floorInstruments.attempts.record(job.attemptsMade + 1, completed);
  };
}

// ---- one round -----------------------------------------------------------------------------------

let roundSeq = 0;
const BY_COMMAND = Symbol('redisCommandsPerJobByCommand');
const MODE_KEY = Symbol('modeKey');

async function runRound(modeSpec, measured = true) {
  const mode = modeSpec.label;
  const name = `overhead-${process.pid}-${++roundSeq}-${modeSpec.key}`;
  const queue = new Queue(name, { connection, prefix: PREFIX });
  let worker;
  try {
    // Producer side, not timed. Instrumentation off unless BENCH_PRODUCER_CONTEXT=1 asks for the
    // instrumented rounds' jobs to carry trace context.
    setMode(modeSpec.instrumented && PRODUCER_CONTEXT ? modeSpec : UNINSTRUMENTED);
    await queue.waitUntilReady();
    for (let i = 0; i < JOBS; i += 1000) {
      const batch = [];
      for (let j = i; j < Math.min(JOBS, i + 1000); j++) batch.push({ name: 'noop', data: { i: j } });
      await queue.addBulk(batch);
    }
    setMode(modeSpec);

    worker = new Worker(name, modeSpec.floor ? floorProcessor(name) : async () => {}, { connection, prefix: PREFIX, concurrency: CONCURRENCY, autorun: false });
    let completed = 0;
    let failed = 0;
    const failures = [];
    const workerErrors = [];
    let resolveDone;
    let rejectDone;
    const done = new Promise((resolve, reject) => {
      resolveDone = resolve;
      rejectDone = reject;
    });
    const check = () => {
      if (completed + failed >= JOBS) resolveDone();
    };
    worker.on('completed', () => {
      completed++;
      check();
    });
    worker.on('failed', (job, err) => {
      failed++;
      if (failures.length < 5) failures.push(`job ${job?.id}: ${err?.stack ?? err}`);
      check();
    });
    worker.on('error', (err) => {
      workerErrors.push(err?.stack ?? String(err));
      if (workerErrors.length === 1) console.error(`[${mode}] worker error: ${err?.stack ?? err}`);
    });
    await worker.waitUntilReady();
    await spanProcessor.forceFlush(); // the producer's send spans (BENCH_PRODUCER_CONTEXT) go out now
    await sleep(50);

    const spansBefore = spanStats.exported;
    const redisBefore = await redisCommandCalls();
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    if (measured && CALLGRIND_MODE) {
      // BENCH_CALLGRIND_GC=1: each counted round starts from a collected heap (the next rounds then
      // run with a young generation shrunk by it: more scavenges than a worker that runs on).
      if (CALLGRIND_GC) globalThis.gc?.();
      await callgrindControl('--zero');
    }
    const running = worker.run();
    running.catch((err) => rejectDone(err));
    const timer = setTimeout(
      () => rejectDone(new Error(`round timed out after ${ROUND_TIMEOUT_MS} ms: ${completed} completed, ${failed} failed of ${JOBS}`)),
      ROUND_TIMEOUT_MS,
    );
    try {
      await done;
      if (measured && CALLGRIND_MODE) await callgrindControl('--dump');
    } finally {
      clearTimeout(timer);
    }
    const wallMs = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    const redisAfter = await redisCommandCalls();
    const redisUse = redisDelta(redisBefore, redisAfter);

    await worker.close();
    await running.catch(() => {});
    await spanProcessor.forceFlush();
    const spans = spanStats.exported - spansBefore;

    if (failed > 0) {
      throw new Error(`[${mode}] ${failed} of ${JOBS} jobs failed; first failures:\n${failures.join('\n')}`);
    }
    const cpuUs = cpu.user + cpu.system;
    return {
      mode,
      [MODE_KEY]: modeSpec.key,
      queue: name,
      jobs: JOBS,
      wallMs: round(wallMs, 1),
      jobsPerSec: round(JOBS / (wallMs / 1000), 0),
      cpuUsPerJob: round(cpuUs / JOBS, 2),
      cpuUserUsPerJob: round(cpu.user / JOBS, 2),
      cpuSystemUsPerJob: round(cpu.system / JOBS, 2),
      redisCommandsPerJob: redisUse.perJob,
      redisScriptCallsPerJob: redisUse.scriptsPerJob,
      // Kept out of the printed rounds (see summarize); the last round's breakdown is in the summary.
      [BY_COMMAND]: redisUse.byCommand,
      spansPerJob: round(spans / JOBS, 3),
      workerErrors: workerErrors.length,
    };
  } finally {
    if (worker) await worker.close().catch(() => {});
    setMode(UNINSTRUMENTED);
    await queue.obliterate({ force: true }).catch((err) => console.error(`obliterate ${name}: ${err}`));
    await queue.close().catch(() => {});
  }
}

// ---- statistics and output -------------------------------------------------------------------------

function summarize(results) {
  const pick = (k) => results.map((r) => r[k]);
  return {
    rounds: results.length,
    medianJobsPerSec: round(median(pick('jobsPerSec')), 0),
    minJobsPerSec: Math.min(...pick('jobsPerSec')),
    maxJobsPerSec: Math.max(...pick('jobsPerSec')),
    medianCpuUsPerJob: round(median(pick('cpuUsPerJob')), 2),
    minCpuUsPerJob: Math.min(...pick('cpuUsPerJob')),
    maxCpuUsPerJob: Math.max(...pick('cpuUsPerJob')),
    medianRedisCommandsPerJob: round(median(pick('redisCommandsPerJob')), 3),
    medianRedisScriptCallsPerJob: round(median(pick('redisScriptCallsPerJob')), 3),
    medianSpansPerJob: round(median(pick('spansPerJob')), 3),
    redisCommandsPerJobByCommandLastRound: results.at(-1)[BY_COMMAND],
  };
}

function table(rows) {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => String(r[i]).length)));
  return rows
    .map((r) => r.map((c, i) => (i === 0 ? String(c).padEnd(widths[i]) : String(c).padStart(widths[i]))).join('  '))
    .join('\n');
}

// ---- main ----------------------------------------------------------------------------------------------

async function main() {
  if (PROFILE_MODE) {
    // One mode alone, for `node --cpu-prof`: a warm-up, then BENCH_ROUNDS rounds.
    const mode = [...MODES, ...SINGLE_MODES].find((m) => m.key === PROFILE_MODE);
    if (mode === undefined) throw new Error(`BENCH_PROFILE_MODE must be one of ${[...MODES, ...SINGLE_MODES].map((m) => m.key).join(', ')}`);
    await runRound(mode);
    for (let i = 0; i < ROUNDS; i++) {
      const r = await runRound(mode);
      console.log(`${mode.label}: ${r.jobsPerSec} jobs/s, ${r.cpuUsPerJob.toFixed(2)} µs CPU/job`);
    }
    return;
  }
  if (CALLGRIND_MODE) {
    const mode = [...MODES, ...SINGLE_MODES].find((m) => m.key === CALLGRIND_MODE);
    if (mode === undefined) throw new Error(`BENCH_CALLGRIND_MODE must be one of ${[...MODES, ...SINGLE_MODES].map((m) => m.key).join(', ')}`);
    await runRound(mode, false); // warm-up, not counted
    let r;
    for (let i = 0; i < CALLGRIND_ROUNDS; i++) r = await runRound(mode);
    console.log(JSON.stringify({ callgrindRound: { mode: mode.key, label: mode.label, jobs: JOBS, rounds: CALLGRIND_ROUNDS, spansPerJob: r.spansPerJob } }));
    return;
  }
  const env = {
    node: process.version,
    bullmq: bullmqVersion,
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model,
    redis: (await redis.info('server')).match(/redis_version:(\S+)/)?.[1],
    jobs: JOBS,
    roundsPerMode: ROUNDS,
    concurrency: CONCURRENCY,
    producerContext: PRODUCER_CONTEXT,
    modes: Object.fromEntries(
      MODES.map((m) => [m.key, m.instrumented ? `setConfig(${JSON.stringify(m.config)}) + enable()` : m.floor ? 'disable(); hand-written span and records' : 'disable()']),
    ),
    loadAvgAtStart: loadavg().map((x) => round(x, 2)),
  };
  console.log(
    `queue-otel overhead bench: Node ${env.node}, bullmq ${env.bullmq}, ${env.cpus} CPUs (${env.cpuModel}), Redis ${env.redis}`,
  );
  console.log(
    `${JOBS} no-op jobs per round, concurrency ${CONCURRENCY}, ${ROUNDS} measured rounds per mode (${MODES.length} modes) ` +
      `after 1 warm-up each${PRODUCER_CONTEXT ? ', jobs of instrumented rounds carry producer trace context' : ''}`,
  );
  const labelWidth = Math.max(...MODES.map((m) => m.label.length));

  // Warm-up: one of each, discarded.
  for (const mode of MODES) {
    const r = await runRound(mode);
    console.log(`warm-up   ${r.mode.padEnd(labelWidth)} ${String(r.jobsPerSec).padStart(6)} jobs/s  ${r.cpuUsPerJob.toFixed(2).padStart(7)} µs CPU/job  (discarded)`);
  }

  // Blocks of one round per mode, cycling through the orders of a balanced 4x4 Latin square.
  const [A, B, C, D] = MODES;
  const orders = [
    [A, B, D, C],
    [B, C, A, D],
    [C, D, B, A],
    [D, A, C, B],
  ];
  const results = [];
  const blocks = [];
  let n = 0;
  for (let b = 0; b < ROUNDS; b++) {
    const block = {};
    for (const mode of orders[b % orders.length]) {
      const r = await runRound(mode);
      results.push(r);
      block[mode.key] = r;
      console.log(
        `round ${String(++n).padStart(2)}  ${r.mode.padEnd(labelWidth)} ${String(r.jobsPerSec).padStart(6)} jobs/s  ` +
          `${r.cpuUsPerJob.toFixed(2).padStart(7)} µs CPU/job  ${r.redisCommandsPerJob.toFixed(3)} Redis cmds/job  ${r.spansPerJob} spans/job`,
      );
    }
    blocks.push(block);
  }

  const summary = {};
  for (const mode of MODES) summary[mode.key] = summarize(results.filter((r) => r[MODE_KEY] === mode.key));
  const off = summary[UNINSTRUMENTED.key];

  // Against uninstrumented: the difference of the medians, and (paired) the median over blocks of
  // the within-block difference, which is less sensitive to load that drifts over the run.
  const comparisons = {};
  for (const mode of MODES.slice(1)) {
    const on = summary[mode.key];
    const target = TARGETS[mode.key];
    const addedCpuUsPerJob = round(on.medianCpuUsPerJob - off.medianCpuUsPerJob, 2);
    const throughputRatio = round(on.medianJobsPerSec / off.medianJobsPerSec, 3);
    const pairedAddedCpuUsPerJob = round(median(blocks.map((b) => b[mode.key].cpuUsPerJob - b[UNINSTRUMENTED.key].cpuUsPerJob)), 2);
    const pairedThroughputRatio = round(median(blocks.map((b) => b[mode.key].jobsPerSec / b[UNINSTRUMENTED.key].jobsPerSec)), 3);
    comparisons[mode.key] = {
      mode: mode.label,
      addedCpuUsPerJob,
      throughputRatio,
      pairedAddedCpuUsPerJob,
      pairedThroughputRatio,
      addedRedisCommandsPerJob: round(on.medianRedisCommandsPerJob - off.medianRedisCommandsPerJob, 3),
      target,
      // The verdict uses the median-based figures; the paired ones are shown beside them.
      addedCpuPass: target === undefined ? undefined : addedCpuUsPerJob <= target.maxAddedCpuUsPerJob,
      throughputPass: target === undefined ? undefined : throughputRatio >= target.minThroughputRatio,
      pairedAddedCpuPass: target === undefined ? undefined : pairedAddedCpuUsPerJob <= target.maxAddedCpuUsPerJob,
      pairedThroughputPass: target === undefined ? undefined : pairedThroughputRatio >= target.minThroughputRatio,
    };
  }

  console.log('');
  console.log(
    table([
      ['mode', 'median jobs/s', '(min-max)', 'median CPU µs/job', '(min-max)', 'Redis cmds/job', 'of which scripts', 'spans/job'],
      ...MODES.map((mode) => {
        const s = summary[mode.key];
        return [
          mode.label,
          s.medianJobsPerSec,
          `(${s.minJobsPerSec}-${s.maxJobsPerSec})`,
          s.medianCpuUsPerJob.toFixed(2),
          `(${s.minCpuUsPerJob.toFixed(2)}-${s.maxCpuUsPerJob.toFixed(2)})`,
          s.medianRedisCommandsPerJob.toFixed(3),
          s.medianRedisScriptCallsPerJob.toFixed(3),
          s.medianSpansPerJob,
        ];
      }),
    ]),
  );
  console.log('');
  const verdict = (pass) => (pass === undefined ? '' : pass ? 'PASS' : 'MISS');
  console.log('vs uninstrumented (verdict on the median-based figures; paired = median over blocks of the within-block difference):');
  console.log(
    table([
      ['mode', 'added CPU µs/job', 'target', '', 'paired', 'throughput ratio', 'target', '', 'paired', 'added Redis cmds/job'],
      ...MODES.slice(1).map((mode) => {
        const c = comparisons[mode.key];
        return [
          mode.label,
          c.addedCpuUsPerJob.toFixed(2),
          c.target === undefined ? '-' : `<= ${c.target.maxAddedCpuUsPerJob}`,
          verdict(c.addedCpuPass),
          `${c.pairedAddedCpuUsPerJob.toFixed(2)} ${verdict(c.pairedAddedCpuPass)}`,
          c.throughputRatio.toFixed(3),
          c.target === undefined ? '-' : `>= ${c.target.minThroughputRatio.toFixed(2)}`,
          verdict(c.throughputPass),
          `${c.pairedThroughputRatio.toFixed(3)} ${verdict(c.pairedThroughputPass)}`,
          c.addedRedisCommandsPerJob,
        ];
      }),
    ]),
  );
  const rOff = comparisons.resourcesOff;
  const all = comparisons.everythingOn;
  console.log(
    `cost of per-job resources alone (everything on vs resources off): ` +
      `${round(summary.everythingOn.medianCpuUsPerJob - summary.resourcesOff.medianCpuUsPerJob, 2).toFixed(2)} µs CPU/job, ` +
      `throughput ratio ${round(summary.everythingOn.medianJobsPerSec / summary.resourcesOff.medianJobsPerSec, 3).toFixed(3)}`,
  );
  const floor = summary.sdkFloor;
  console.log(
    `queue-otel's own cost over the hand-written SDK floor: resources off ` +
      `${round(summary.resourcesOff.medianCpuUsPerJob - floor.medianCpuUsPerJob, 2).toFixed(2)} µs CPU/job, ` +
      `throughput ratio ${round(summary.resourcesOff.medianJobsPerSec / floor.medianJobsPerSec, 3).toFixed(3)}; everything on ` +
      `${round(summary.everythingOn.medianCpuUsPerJob - floor.medianCpuUsPerJob, 2).toFixed(2)} µs CPU/job, ` +
      `throughput ratio ${round(summary.everythingOn.medianJobsPerSec / floor.medianJobsPerSec, 3).toFixed(3)}`,
  );
  env.loadAvgAtEnd = loadavg().map((x) => round(x, 2));
  console.log(`load average (1/5/15 min) at start ${env.loadAvgAtStart.join(' ')}, at end ${env.loadAvgAtEnd.join(' ')}`);
  console.log('Redis cmds/job: INFO commandstats, server-wide (other clients add noise); commands run inside Lua scripts count too');
  if (diagMessages.length > 0) console.log(`diag warnings/errors: ${diagMessages.length} (see stderr)`);

  const output = {
    date: new Date().toISOString(),
    env,
    summary: {
      ...summary,
      vsUninstrumented: comparisons,
      allTargetsMet: [rOff, all].every((c) => c.addedCpuPass && c.throughputPass),
    },
    rounds: results,
    spansByName: Object.fromEntries(spanStats.byName),
    metricExports: sdk.metrics.exports,
    diagMessages,
    totalSeconds: round((performance.now() - startedAt) / 1000, 1),
  };
  const file = fileURLToPath(new URL('./last-run.json', import.meta.url));
  writeFileSync(file, JSON.stringify(output, null, 2) + '\n');
  console.log(`\nwritten to ${file} (per-round results, summaries, environment); total ${output.totalSeconds} s`);
}

await runBench(main, async () => {
  try {
    instrumentation.disable();
  } catch {}
  await sdk.shutdown();
  await redis.quit().catch(() => redis.disconnect());
});
