// Overhead of queue-otel on Bull, Bee-Queue, pg-boss and graphile-worker, measured the way
// bench/overhead.mjs measures BullMQ: no-op jobs, uninstrumented and instrumented rounds
// interleaved in one process run (blocks of the three modes in rotating order), with a real SDK
// (BatchSpanProcessor, PeriodicExportingMetricReader every second, exporters that drop everything),
// reporting process CPU per job and throughput.
//
//   uninstrumented               instrumentation.disable()
//   instrumented, resources off  setConfig({ jobCpu: false, jobMemory: false }) + enable()
//   instrumented, everything on  setConfig({}) + enable() (the defaults)
//
// Run: `npm run bench` (all benches) or `node bench/libraries.mjs [bull bee-queue pg-boss graphile-worker]`
// after a build. Needs Redis (BENCH_REDIS_URL) and PostgreSQL (BENCH_PG_URL, default
// postgres://postgres@127.0.0.1:5432/test; each run uses a schema of its own and drops it).
//
// Environment: BENCH_ROUNDS (measured rounds per mode, default 6), BENCH_REDIS_JOBS (jobs per round
// for the Redis libraries, default 10000), BENCH_PG_JOBS (for the PostgreSQL ones, default 2000),
// BENCH_CONCURRENCY (default 50 for Redis, 10 for PostgreSQL).
//
// Per round: the jobs are added uninstrumented (not timed), then the time from starting the
// consumer until the N-th job's handler has returned (pg-boss, graphile-worker) or the library
// reported it done (Bull 'completed', Bee-Queue 'succeeded'). pg-boss's own telemetry (on by
// default) records into the same SDK in every mode: the figure is what queue-otel adds to it.
// Results are printed and written to bench/libraries-last-run.json.

import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus, loadavg } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { benchSdk, intEnv, median, round, runBench } from './common.mjs';

const require = createRequire(import.meta.url);
const ROUNDS = intEnv('BENCH_ROUNDS', 6);
const REDIS_JOBS = intEnv('BENCH_REDIS_JOBS', 10000);
const PG_JOBS = intEnv('BENCH_PG_JOBS', 2000);
const REDIS_URL = new URL(process.env.BENCH_REDIS_URL || 'redis://127.0.0.1:6379');
const PG_URL = process.env.BENCH_PG_URL || 'postgres://postgres@127.0.0.1:5432/test';
const redis = { host: REDIS_URL.hostname, port: Number(REDIS_URL.port || 6379) };

// ---- SDK ---------------------------------------------------------------------------------------
// No diag logger (this bench prints no diag messages). The providers are also the global ones, so
// pg-boss's own telemetry records into the same SDK in every mode.
const sdk = benchSdk({ diag: false, setGlobal: true });
const { tracerProvider, meterProvider, spanProcessor } = sdk;

const qo = require('../dist/cjs/index.js');
const MODES = [
  { key: 'uninstrumented', label: 'uninstrumented' },
  { key: 'resourcesOff', label: 'instrumented, resources off', config: { jobCpu: false, jobMemory: false } },
  { key: 'everythingOn', label: 'instrumented, everything on', config: {} },
];
const ORDERS = [[0, 1, 2], [2, 1, 0], [1, 2, 0], [0, 2, 1], [2, 0, 1], [1, 0, 2]];

function setMode(instrumentation, mode) {
  if (mode.config === undefined) {
    instrumentation.disable();
  } else {
    instrumentation.setConfig(mode.config);
    instrumentation.enable();
  }
}

// ---- one library per driver: setup, one round, teardown ---------------------------------------
const drivers = {
  bull: {
    jobs: REDIS_JOBS,
    concurrency: intEnv('BENCH_CONCURRENCY', 50),
    instrumentation: () => new qo.BullInstrumentation({}),
    async setup() {
      const Queue = require('bull');
      return {
        version: require('bull/package.json').version,
        async round(n, jobs, concurrency, consuming) {
          const name = `qotel-bench-bull-${process.pid}-${n}`;
          const producer = new Queue(name, { redis, prefix: 'qotel-bench' });
          for (let i = 0; i < jobs; i += 1000) await producer.addBulk(Array.from({ length: Math.min(1000, jobs - i) }, () => ({ name: 'noop', data: {} })));
          await producer.close();
          await consuming();
          // Created after the mode is set: Bull binds processJob in its constructor.
          const queue = new Queue(name, { redis, prefix: 'qotel-bench' });
          try {
            let done = 0;
            const finished = new Promise((resolve) => queue.on('completed', () => ++done === jobs && resolve()));
            const t = start();
            void queue.process('noop', concurrency, async () => {});
            await finished;
            return t.stop();
          } finally {
            await queue.obliterate({ force: true }).catch(() => {});
            await queue.close();
          }
        },
        async teardown() {},
      };
    },
  },
  'bee-queue': {
    jobs: REDIS_JOBS,
    concurrency: intEnv('BENCH_CONCURRENCY', 50),
    instrumentation: () => new qo.BeeQueueInstrumentation({}),
    async setup() {
      const Queue = require('bee-queue');
      return {
        version: require('bee-queue/package.json').version,
        async round(n, jobs, concurrency, consuming) {
          const queue = new Queue(`qotel-bench-bee-${process.pid}-${n}`, { redis, prefix: 'qotel-bench', removeOnSuccess: true, sendEvents: false });
          try {
            await queue.ready();
            for (let i = 0; i < jobs; i += 1000) await queue.saveAll(Array.from({ length: Math.min(1000, jobs - i) }, () => queue.createJob({})));
            await consuming();
            let done = 0;
            const finished = new Promise((resolve) => queue.on('succeeded', () => ++done === jobs && resolve()));
            const t = start();
            queue.process(concurrency, async () => {});
            await finished;
            return t.stop();
          } finally {
            await queue.destroy().catch(() => {});
            await queue.close();
          }
        },
        async teardown() {},
      };
    },
  },
  'pg-boss': {
    jobs: PG_JOBS,
    concurrency: intEnv('BENCH_CONCURRENCY', 10),
    instrumentation: () => new qo.PgBossInstrumentation({}),
    async setup() {
      const { PgBoss } = require('pg-boss');
      const schema = `qotel_bench_${randomUUID().slice(0, 8)}`;
      // Counts and the queue cache refreshed every second, so that burst mode (fetch again at once
      // while jobs are ready) engages: otherwise each worker waits out its polling interval per job.
      const boss = new PgBoss({ connectionString: PG_URL, schema, max: 20, monitorIntervalSeconds: 1, superviseIntervalSeconds: 1, queueCacheIntervalSeconds: 1 });
      boss.on('error', (e) => console.error('pg-boss:', e.message));
      await boss.start();
      return {
        version: require('pg-boss/package.json').version,
        async round(n, jobs, concurrency, consuming) {
          const name = `bench_${n}`;
          await boss.createQueue(name);
          for (let i = 0; i < jobs; i += 500) await boss.insert(name, Array.from({ length: Math.min(500, jobs - i) }, () => ({ data: {} })));
          await sleep(2500); // the monitor counts the ready jobs and the queue cache picks them up
          await consuming();
          let done = 0;
          let resolve;
          const finished = new Promise((r) => (resolve = r));
          const t = start();
          await boss.work(name, { localConcurrency: concurrency, pollingIntervalSeconds: 0.5, burstWhenReadyExceeds: 1 }, async () => {
            if (++done === jobs) resolve();
          });
          await finished;
          const result = t.stop();
          await boss.offWork(name);
          await boss.deleteQueue(name).catch(() => {});
          return result;
        },
        async teardown() {
          await boss.stop({ graceful: false });
          await dropSchema(schema);
        },
      };
    },
  },
  'graphile-worker': {
    jobs: PG_JOBS,
    concurrency: intEnv('BENCH_CONCURRENCY', 10),
    instrumentation: () => new qo.GraphileWorkerInstrumentation({}),
    async setup() {
      const gw = require('graphile-worker');
      const schema = `qotel_bench_${randomUUID().slice(0, 8)}`;
      const logger = new gw.Logger(() => () => {});
      const utils = await gw.makeWorkerUtils({ connectionString: PG_URL, schema, logger });
      await utils.migrate();
      return {
        version: versionOf('graphile-worker'),
        async round(n, jobs, concurrency, consuming) {
          const task = `noop_${n}`;
          for (let i = 0; i < jobs; i += 500) await utils.addJobs(Array.from({ length: Math.min(500, jobs - i) }, () => ({ identifier: task, payload: {} })));
          await consuming();
          let done = 0;
          let resolve;
          const finished = new Promise((r) => (resolve = r));
          const t = start();
          const runner = await gw.run({
            connectionString: PG_URL, schema, logger, concurrency, pollInterval: 500, noHandleSignals: true,
            taskList: { [task]: async () => void (++done === jobs && resolve()) },
          });
          await finished;
          const result = t.stop();
          await runner.stop();
          return result;
        },
        async teardown() {
          await utils.release();
          await dropSchema(schema);
        },
      };
    },
  },
};

/** A package's version from its package.json (graphile-worker does not export that path). */
function versionOf(name) {
  const { readFileSync } = require('node:fs');
  const { dirname, join } = require('node:path');
  let dir = dirname(require.resolve(name));
  while (!dir.endsWith('node_modules') && dir !== dirname(dir)) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
      if (pkg.name === name) return pkg.version;
    } catch {}
    dir = dirname(dir);
  }
  return 'unknown';
}

async function dropSchema(schema) {
  const pg = require('pg');
  const client = new pg.Client({ connectionString: PG_URL });
  await client.connect();
  await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  await client.end();
}

function start() {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  return {
    stop() {
      const cpu = process.cpuUsage(cpu0);
      return { wallMs: performance.now() - t0, cpuUs: cpu.user + cpu.system };
    },
  };
}

async function benchLibrary(name) {
  const driver = drivers[name];
  const instrumentation = driver.instrumentation();
  instrumentation.setTracerProvider(tracerProvider);
  instrumentation.setMeterProvider(meterProvider);
  const lib = await driver.setup();
  const results = Object.fromEntries(MODES.map((m) => [m.key, []]));
  let n = 0;
  const runOne = async (mode, record) => {
    // Jobs are added uninstrumented; the mode is set before the consumer starts.
    instrumentation.disable();
    const r = await lib.round(++n, driver.jobs, driver.concurrency, async () => setMode(instrumentation, mode));
    instrumentation.disable();
    await spanProcessor.forceFlush();
    const row = { jobsPerSec: driver.jobs / (r.wallMs / 1000), cpuUsPerJob: r.cpuUs / driver.jobs };
    if (record) results[mode.key].push(row);
    console.log(`${name.padEnd(16)} ${record ? `round ${String(n).padStart(2)}` : 'warm-up '} ${mode.label.padEnd(28)} ${String(Math.round(row.jobsPerSec)).padStart(6)} jobs/s ${row.cpuUsPerJob.toFixed(1).padStart(7)} µs CPU/job`);
  };
  try {
    for (const mode of MODES) await runOne(mode, false);
    for (let b = 0; b < ROUNDS; b++) for (const i of ORDERS[b % ORDERS.length]) await runOne(MODES[i], true);
  } finally {
    await lib.teardown();
  }
  const summary = {};
  for (const mode of MODES) {
    const rows = results[mode.key];
    summary[mode.key] = { medianJobsPerSec: round(median(rows.map((r) => r.jobsPerSec)), 0), medianCpuUsPerJob: round(median(rows.map((r) => r.cpuUsPerJob)), 1) };
  }
  const off = summary.uninstrumented;
  for (const key of ['resourcesOff', 'everythingOn']) {
    summary[key].addedCpuUsPerJob = round(summary[key].medianCpuUsPerJob - off.medianCpuUsPerJob, 1);
    summary[key].throughputRatio = round(summary[key].medianJobsPerSec / off.medianJobsPerSec, 3);
  }
  return { library: name, version: lib.version, jobsPerRound: driver.jobs, concurrency: driver.concurrency, rounds: ROUNDS, summary };
}

async function main() {
  const wanted = process.argv.slice(2).length > 0 ? process.argv.slice(2) : Object.keys(drivers);
  for (const w of wanted) if (!drivers[w]) throw new Error(`unknown library ${w}; known: ${Object.keys(drivers).join(', ')}`);
  const env = { node: process.version, cpus: cpus().length, cpuModel: cpus()[0]?.model, loadAvgAtStart: loadavg().map((x) => round(x)) };
  console.log(`queue-otel library overhead bench: Node ${env.node}, ${env.cpus} CPUs, ${ROUNDS} measured rounds per mode after 1 warm-up each; load average ${env.loadAvgAtStart.join(' ')}`);
  const out = [];
  for (const name of wanted) out.push(await benchLibrary(name));
  env.loadAvgAtEnd = loadavg().map((x) => round(x));
  console.log('');
  console.log('library          version  jobs/round conc  uninstr. jobs/s  CPU µs/job | resources off: +CPU µs/job  ratio | everything on: +CPU µs/job  ratio');
  for (const r of out) {
    const s = r.summary;
    console.log(
      `${r.library.padEnd(16)} ${r.version.padEnd(8)} ${String(r.jobsPerRound).padStart(10)} ${String(r.concurrency).padStart(4)}  ` +
        `${String(s.uninstrumented.medianJobsPerSec).padStart(15)}  ${s.uninstrumented.medianCpuUsPerJob.toFixed(1).padStart(10)} | ` +
        `${s.resourcesOff.addedCpuUsPerJob.toFixed(1).padStart(27)}  ${s.resourcesOff.throughputRatio.toFixed(3)} | ` +
        `${s.everythingOn.addedCpuUsPerJob.toFixed(1).padStart(27)}  ${s.everythingOn.throughputRatio.toFixed(3)}`,
    );
  }
  console.log(`load average (1/5/15 min) at start ${env.loadAvgAtStart.join(' ')}, at end ${env.loadAvgAtEnd.join(' ')}; spans exported ${sdk.spans.exported}`);
  const file = fileURLToPath(new URL('./libraries-last-run.json', import.meta.url));
  writeFileSync(file, JSON.stringify({ date: new Date().toISOString(), env, results: out }, null, 2) + '\n');
  console.log(`written to ${file}`);
}

await runBench(main, () => sdk.shutdown());
