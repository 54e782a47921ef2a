// Cost of CPU profiles of jobs (option profileJobs), in two parts:
//
// 1. Per job, while a profile is being taken: no-op BullMQ jobs at concurrency 50 beside one
//    long-running job named `background` (it awaits a 2 ms timer in a loop until the round ends),
//    in three modes, in blocks of one round each, the blocks cycling through the six orders of the
//    three (so that each mode comes right after each other one as often: a mode's cost that lasts
//    into the next round, if any, hits every mode alike, and is shown by predecessor):
//      off        the defaults (profileJobs unset)
//      armed      profileJobs: ['not-here']: listed names, none of which runs (the per-attempt check)
//      profiling  profileJobs: ['background']: the background job is profiled for the whole round,
//                 so V8's sampler runs and every slice close checks for the profiled job
//    Each round: addBulk N jobs after the background job (not timed), start the worker, time from
//    worker.run() until the N-th no-op job completed: wall time and process CPU (user + system).
//    The profiling mode checks that a profile file was written for its round.
// 2. Per profile: the pieces of one profile of this thread timed in this process (bullmq, ioredis
//    and the OpenTelemetry SDK loaded, so V8 has their code to log): the profiler's start (which
//    blocks the thread while V8 logs the code that exists), its stop (the profile handed over),
//    the cut to a job's slices, JSON.stringify, and the file's size, around a 200 ms job of 100
//    slices of 1 ms with other code between them; then again with the V8 heap grown by filler
//    objects (BENCH_HEAP_MB, default 256), since the start walks the heap. And the sampling's own
//    cost: the CPU time of this thread, and of the process (V8's profiler thread included), for a
//    fixed computation (about 100 ms), with the profiler running and not, in alternation
//    (BENCH_PROFILES pairs), as ratios, at the interval queue-otel uses and at 250 µs.
//
// Run: `npm run build && node bench/profile.mjs`. Needs Redis (BENCH_REDIS_URL, default
// redis://127.0.0.1:6379). Environment: BENCH_JOBS (no-op jobs per round, default 10000),
// BENCH_ROUNDS (measured rounds per mode, default 6), BENCH_PROFILES (profiles timed in part 2,
// default 10), BENCH_HEAP_MB (filler for part 2's second run; above ~1500, raise Node's heap limit
// with --max-old-space-size), BENCH_PART (1 or 2: that part only). The SDK is real (BatchSpanProcessor and PeriodicExportingMetricReader at 1 s, with
// exporters that drop everything), as in bench/overhead.mjs.

import { createRequire } from 'node:module';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { benchSdk, intEnv, median, runBench } from './common.mjs';

const require = createRequire(import.meta.url);
const JOBS = intEnv('BENCH_JOBS', 10000);
const ROUNDS = intEnv('BENCH_ROUNDS', 6);
const PROFILES = intEnv('BENCH_PROFILES', 10);
const HEAP_MB = intEnv('BENCH_HEAP_MB', 256);
/** `1` or `2`: run that part only. */
const PART = process.env.BENCH_PART ?? '';
const REDIS_URL = new URL(process.env.BENCH_REDIS_URL || 'redis://127.0.0.1:6379');
const CONCURRENCY = 50;

// Diag messages are kept, not echoed (main prints their count and the first). No global
// propagator: this bench never set one, and one would add its extract to every job's span.
const sdk = benchSdk({ diag: 'keep', propagator: false });
const { tracerProvider, meterProvider, diagMessages } = sdk;

const { BullMQInstrumentation } = require('../dist/cjs/index.js');
const { startThisThread } = require('../dist/cjs/core/profiling/inspector.js');
const { keepSlices } = require('../dist/cjs/core/profiling/cpuprofile.js');
const { SAMPLING_INTERVAL_US } = require('../dist/cjs/core/profiling/profiler.js');
const instrumentation = new BullMQInstrumentation({});
instrumentation.setTracerProvider(tracerProvider);
instrumentation.setMeterProvider(meterProvider);
const { Queue, Worker } = require('bullmq');
const connection = { host: REDIS_URL.hostname, port: Number(REDIS_URL.port || 6379), maxRetriesPerRequest: null };

const directory = mkdtempSync(join(tmpdir(), 'queue-otel-profile-bench-'));
const MODES = [
  { key: 'off', config: {} },
  { key: 'armed', config: { profileJobs: ['not-here'] } },
  { key: 'profiling', config: { profileJobs: ['background'], profileInterval: 1, profileDirectory: directory } },
];

let roundSeq = 0;
async function runRound(mode) {
  const name = `profile-bench-${process.pid}-${++roundSeq}-${mode.key}`;
  const queue = new Queue(name, { connection });
  let worker;
  try {
    instrumentation.disable(); // jobs are added uninstrumented; adding is not timed
    await queue.add('background', {});
    for (let i = 0; i < JOBS; i += 1000) {
      await queue.addBulk(Array.from({ length: Math.min(1000, JOBS - i) }, () => ({ name: 'noop', data: {} })));
    }
    instrumentation.setConfig(mode.config);
    instrumentation.enable();
    let stop = false;
    let completed = 0;
    let resolveDone;
    const done = new Promise((resolve) => (resolveDone = resolve));
    let resolveBackground;
    const background = new Promise((resolve) => (resolveBackground = resolve));
    worker = new Worker(
      name,
      async (job) => {
        if (job.name !== 'background') return;
        while (!stop) await sleep(2);
      },
      { connection, concurrency: CONCURRENCY, autorun: false },
    );
    worker.on('completed', (job) => {
      if (job.name === 'background') resolveBackground();
      else if (++completed === JOBS) resolveDone();
    });
    await worker.waitUntilReady();
    const files = readdirSync(directory).length;
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const running = worker.run();
    await done;
    const wallMs = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    stop = true;
    await background;
    await worker.close();
    await running.catch(() => {});
    if (mode.key === 'profiling') {
      const deadline = Date.now() + 5000;
      while (readdirSync(directory).length === files && Date.now() < deadline) await sleep(20);
      if (readdirSync(directory).length === files) throw new Error('profiling round: no profile was written');
    }
    return { mode: mode.key, jobsPerSec: JOBS / (wallMs / 1000), cpuUsPerJob: (cpu.user + cpu.system) / JOBS };
  } finally {
    await worker?.close().catch(() => {});
    instrumentation.setConfig({});
    await queue.obliterate({ force: true }).catch(() => {});
    await queue.close().catch(() => {});
  }
}

/** CPU time of this thread, ms (process.threadCpuUsage where Node has it, else the process's). */
function threadCpuMs() {
  const u = typeof process.threadCpuUsage === 'function' ? process.threadCpuUsage() : process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/** CPU ms of this thread and of the process for a fixed computation (square roots, ~100 ms). */
function computeCpuMs() {
  const t0 = threadCpuMs();
  const p0 = process.cpuUsage();
  let x = 0;
  for (let i = 0; i < 4e7; i++) x += Math.sqrt(i);
  if (x < 0) console.log(x); // keeps the loop from being optimised away
  const p = process.cpuUsage(p0);
  return { thread: threadCpuMs() - t0, process: (p.user + p.system) / 1000 };
}

/** Part 2: one profile of this thread, its pieces timed. */
async function oneProfile() {
  const w0 = performance.now();
  const c0 = threadCpuMs();
  const session = startThisThread(SAMPLING_INTERVAL_US);
  const startWallMs = performance.now() - w0;
  const startCpuMs = threadCpuMs() - c0;
  // A 200 ms job: 100 slices of 1 ms, other code spinning 1 ms between them.
  const starts = [];
  const ends = [];
  for (let i = 0; i < 100; i++) {
    const s = performance.now();
    while (performance.now() - s < 1);
    starts.push(s);
    ends.push(performance.now());
    const o = performance.now();
    while (performance.now() - o < 1);
    await new Promise((r) => setImmediate(r));
  }
  const s0 = performance.now();
  const profile = session.stop();
  const stopMs = performance.now() - s0;
  const k0 = performance.now();
  const offset = session.offsetUs;
  const kept = keepSlices(profile, { count: starts.length, starts: starts.map((t) => t * 1000 + offset), ends: ends.map((t) => t * 1000 + offset) });
  const cutMs = performance.now() - k0;
  const j0 = performance.now();
  const body = JSON.stringify(kept);
  const stringifyMs = performance.now() - j0;
  return { startWallMs, startCpuMs, stopMs, cutMs, stringifyMs, bytes: body.length, samples: profile.samples.length, keptSamples: kept?.samples.length ?? 0 };
}

async function main() {
  console.log(`queue-otel profile bench: Node ${process.version}, ${cpus().length} CPUs, load ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  if (PART !== '2') await part1();
  if (PART !== '1') await part2();
  if (diagMessages.length > 0) console.log(`diag: ${diagMessages.length} messages, first: ${diagMessages[0]}`);
}

async function part1() {
  console.log(`part 1: ${JOBS} no-op jobs per round beside one background job, concurrency ${CONCURRENCY}, ${ROUNDS} rounds per mode after one warm-up each`);
  for (const mode of MODES) {
    const r = await runRound(mode);
    console.log(`warm-up   ${r.mode.padEnd(9)} ${r.jobsPerSec.toFixed(0).padStart(6)} jobs/s  ${r.cpuUsPerJob.toFixed(2).padStart(7)} µs CPU/job (discarded)`);
  }
  const [A, B, C] = MODES;
  const orders = [[A, B, C], [B, C, A], [C, A, B], [A, C, B], [C, B, A], [B, A, C]];
  const results = [];
  const blocks = [];
  let previous = MODES.at(-1).key; // the last warm-up
  for (let b = 0; b < ROUNDS; b++) {
    const block = {};
    for (const mode of orders[b % orders.length]) {
      const r = await runRound(mode);
      r.after = previous;
      previous = mode.key;
      results.push(r);
      block[mode.key] = r;
      console.log(`round ${String(results.length).padStart(2)}  ${r.mode.padEnd(9)} ${r.jobsPerSec.toFixed(0).padStart(6)} jobs/s  ${r.cpuUsPerJob.toFixed(2).padStart(7)} µs CPU/job  (after ${r.after})`);
    }
    blocks.push(block);
  }
  console.log('');
  console.log('mode        median jobs/s  median CPU µs/job  paired throughput ratio vs off  paired added CPU µs/job vs off');
  for (const mode of MODES) {
    const mine = results.filter((r) => r.mode === mode.key);
    const ratio = median(blocks.map((b) => b[mode.key].jobsPerSec / b.off.jobsPerSec));
    const added = median(blocks.map((b) => b[mode.key].cpuUsPerJob - b.off.cpuUsPerJob));
    console.log(
      `${mode.key.padEnd(10)}  ${median(mine.map((r) => r.jobsPerSec)).toFixed(0).padStart(13)}  ${median(mine.map((r) => r.cpuUsPerJob)).toFixed(2).padStart(17)}  ` +
        `${ratio.toFixed(3).padStart(30)}  ${added.toFixed(2).padStart(30)}`,
    );
  }

  console.log('median CPU µs/job by the mode of the round before:');
  for (const mode of MODES) {
    const cells = MODES.filter((m) => m.key !== mode.key).map((before) => {
      const rs = results.filter((r) => r.mode === mode.key && r.after === before.key);
      return `after ${before.key}: ${rs.length === 0 ? '-' : median(rs.map((r) => r.cpuUsPerJob)).toFixed(2)} (${rs.length})`;
    });
    console.log(`  ${mode.key.padEnd(10)} ${cells.join('  ')}`);
  }

}

async function part2() {
  console.log('');
  console.log(`part 2: ${PROFILES} profiles of a 200 ms job (100 slices of 1 ms between other code), sampling every ${SAMPLING_INTERVAL_US} µs`);
  instrumentation.disable();
  const filler = [];
  for (const grow of [0, HEAP_MB]) {
    // About 100 bytes per entry (an object and a one-element array), measured by heapUsed below.
    for (let i = 0; i < grow * 10_000; i++) filler.push({ a: i, b: [i] });
    globalThis.gc?.();
    const heapMB = process.memoryUsage().heapUsed / 2 ** 20;
    const profiles = [];
    for (let i = 0; i < PROFILES; i++) profiles.push(await oneProfile());
    const m = (k) => median(profiles.map((p) => p[k]));
    const range = (k, d) => `${Math.min(...profiles.map((p) => p[k])).toFixed(d)}-${Math.max(...profiles.map((p) => p[k])).toFixed(d)}`;
    console.log(`V8 heap used ${heapMB.toFixed(0)} MiB:`);
    console.log(`  profiler start: median ${m('startWallMs').toFixed(1)} ms wall (${range('startWallMs', 1)}), ${m('startCpuMs').toFixed(1)} ms CPU of this thread (${range('startCpuMs', 1)})`);
    console.log(`  profiler stop:  median ${m('stopMs').toFixed(1)} ms (${range('stopMs', 1)})`);
    console.log(`  cut to slices:  median ${m('cutMs').toFixed(2)} ms; JSON.stringify ${m('stringifyMs').toFixed(2)} ms; file ${(m('bytes') / 1024).toFixed(0)} KiB`);
    console.log(`  samples: median ${m('samples')} in the profile, ${m('keptSamples')} kept (in the job's slices)`);
  }
  filler.length = 0;

  for (const interval of [SAMPLING_INTERVAL_US, 250]) {
    const thread = [];
    const all = [];
    for (let i = 0; i < PROFILES; i++) {
      const plain = computeCpuMs();
      const session = startThisThread(interval);
      const sampled = computeCpuMs();
      session.stop();
      thread.push(sampled.thread / plain.thread);
      all.push(sampled.process / plain.process);
    }
    console.log(
      `sampling every ${interval} µs: a fixed computation takes ${median(thread).toFixed(3)}x the CPU time of its thread ` +
        `(${Math.min(...thread).toFixed(3)}-${Math.max(...thread).toFixed(3)}) and ${median(all).toFixed(3)}x the CPU time of the process ` +
        `(${Math.min(...all).toFixed(3)}-${Math.max(...all).toFixed(3)}; V8's profiler thread included), median of ${PROFILES} pairs`,
    );
  }
  console.log(`load average at end ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
}

await runBench(main, async () => {
  instrumentation.disable();
  await sdk.shutdown();
  rmSync(directory, { recursive: true, force: true });
});
