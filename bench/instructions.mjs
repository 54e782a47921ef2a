// Instructions per job in each mode of bench/overhead.mjs, counted by valgrind's callgrind: a
// figure that moves far less with the load of a shared machine than time does (time and
// throughput move by 1.5x between rounds here). What moves it: which garbage collections fall in
// the counted window, and when optimised code arrives; so each mode counts several rounds in a
// row, and the median is reported. What it does not see: cache misses, waiting
// on Redis, other processes. Read it beside `node bench/overhead.mjs`, not instead.
//
// Run: `npm run bench:instructions` (builds first), or `node bench/instructions.mjs` after a
// build. Needs valgrind (`apt-get install valgrind`) and Redis. Each mode runs bench/overhead.mjs
// in a process of its own under callgrind (BENCH_CALLGRIND_MODE): one warm-up round, then
// BENCH_ROUNDS rounds (default 3) whose instructions are counted from worker.run() until the last
// job completed, main thread (the worker's event loop, the bottleneck at concurrency 50) and all
// threads (garbage collection helpers included). Two modes at a time; about 10 minutes on an idle
// 2-CPU machine.
//
// Environment: BENCH_JOBS (jobs per counted round, default 6000), BENCH_ROUNDS (counted rounds
// per process, default 3), BENCH_PROCESSES (processes per mode, default 1: a process's rounds
// differ less from each other than from another process's, by up to 10% in everything-on mode
// on 2026-12-02, so a figure meant to be compared with a line is the median of the rounds of
// several processes; processes of different modes alternate, two at a time), BENCH_CALLGRIND_GC=1 (a full collection before each counted round),
// BENCH_REDIS_URL, BENCH_MODES (comma-separated subset of the modes; `cpuOnly`, jobMemory: false,
// is counted only when named here),
// BENCH_KEEP_DUMPS=<dir> (keep callgrind's dumps there, for `callgrind_annotate`: the V8 builtins
// and C++ runtime functions are named).

import { execFile, execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { callgrindInstructions, median } from './common.mjs';

const JOBS = Number(process.env.BENCH_JOBS || 6000);
const ROUNDS = Number(process.env.BENCH_ROUNDS || 3);
const PROCESSES = Number(process.env.BENCH_PROCESSES || 1);
const DEFAULT_MODES = ['uninstrumented', 'resourcesOff', 'everythingOn', 'sdkFloor'];
// cpuOnly (jobMemory: false) only when BENCH_MODES names it.
const ALL_MODES = [...DEFAULT_MODES, 'cpuOnly'];
const MODES = process.env.BENCH_MODES ? process.env.BENCH_MODES.split(',').filter((m) => ALL_MODES.includes(m)) : DEFAULT_MODES;
const overhead = fileURLToPath(new URL('./overhead.mjs', import.meta.url));

try {
  execFileSync('valgrind', ['--version'], { stdio: 'ignore' });
} catch {
  console.error('bench/instructions.mjs needs valgrind (apt-get install valgrind)');
  process.exit(2);
}

const KEEP = process.env.BENCH_KEEP_DUMPS;
const dir = KEEP ? (mkdirSync(KEEP, { recursive: true }), KEEP) : mkdtempSync(join(tmpdir(), 'queue-otel-callgrind-'));

/** Counts `mode` in one process (the `run`-th of the mode): its rounds, per job. */
async function count(mode, run) {
  const name = `cg.${mode}.p${run}`;
  const out = join(dir, name);
  const { stdout } = await promisify(execFile)(
    'valgrind',
    ['--tool=callgrind', '--separate-threads=yes', `--callgrind-out-file=${out}`, process.execPath, '--expose-gc', overhead],
    {
      env: { ...process.env, BENCH_CALLGRIND_MODE: mode, BENCH_CALLGRIND_ROUNDS: String(ROUNDS), BENCH_JOBS: String(JOBS) },
      maxBuffer: 64 * 1024 * 1024,
    },
  );
  const line = stdout.split('\n').find((l) => l.startsWith('{"callgrindRound"'));
  if (!line) throw new Error(`${mode}: bench/overhead.mjs printed no result:\n${stdout}`);
  // With --separate-threads, dump number k asked for by callgrind_control is `<out>.<k>-<thread>`;
  // thread 01 is the main thread.
  const rounds = [];
  for (let k = 1; k <= ROUNDS; k++) {
    const dumps = readdirSync(dir).filter((f) => f.startsWith(`${name}.${k}-`));
    if (dumps.length === 0) throw new Error(`${mode}: no callgrind dump ${k} in ${dir}`);
    const byThread = dumps.map((f) => [f, callgrindInstructions(join(dir, f))]);
    const main = byThread.find(([f]) => f.endsWith('-01'))?.[1] ?? 0;
    const all = byThread.reduce((sum, [, n]) => sum + n, 0);
    rounds.push({ mainPerJob: Math.round(main / JOBS), allThreadsPerJob: Math.round(all / JOBS) });
  }
  return { mode, run, ...JSON.parse(line).callgrindRound, rounds };
}

const started = performance.now();
const results = {};
// Process 1 of every mode, then process 2 of every mode, ...: a drift of the machine over the
// run reaches every mode alike.
const tasks = [];
for (let run = 1; run <= PROCESSES; run++) for (const mode of MODES) tasks.push([mode, run]);
try {
  for (let i = 0; i < tasks.length; i += 2) {
    const pair = await Promise.all(tasks.slice(i, i + 2).map(([mode, run]) => count(mode, run)));
    for (const r of pair) {
      const prior = results[r.mode];
      const rounds = [...(prior?.rounds ?? []), ...r.rounds.map((round) => ({ process: r.run, ...round }))];
      results[r.mode] = {
        ...r,
        rounds,
        mainPerJob: Math.round(median(rounds.map((x) => x.mainPerJob))),
        allThreadsPerJob: Math.round(median(rounds.map((x) => x.allThreadsPerJob))),
      };
    }
  }
} finally {
  if (!KEEP) rmSync(dir, { recursive: true, force: true });
}

const base = results.uninstrumented ?? results[MODES[0]];
const rows = MODES.map((m) => {
  const r = results[m];
  return [
    r.label,
    r.mainPerJob.toLocaleString('en-US'),
    (base.mainPerJob / r.mainPerJob).toFixed(3),
    r.allThreadsPerJob.toLocaleString('en-US'),
    (base.allThreadsPerJob / r.allThreadsPerJob).toFixed(3),
  ];
});
const header = ['mode', 'main thread instr/job', 'ratio', 'all threads instr/job', 'ratio'];
const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
const line = (r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
console.log(
  `instructions per job, median of ${ROUNDS * PROCESSES} rounds (${ROUNDS} in each of ${PROCESSES} process${PROCESSES === 1 ? '' : 'es'}) ` +
    `of ${JOBS} no-op BullMQ jobs at concurrency 50 per mode (Node ${process.version})`,
);
console.log(line(header));
for (const r of rows) console.log(line(r));
console.log('ratio: uninstrumented instructions / the mode\'s (the throughput it would reach if instructions were all that counted)');
for (const m of MODES) {
  const rounds = results[m].rounds.map((r) => `${PROCESSES > 1 ? `p${r.process} ` : ''}${r.mainPerJob.toLocaleString('en-US')} / ${r.allThreadsPerJob.toLocaleString('en-US')}`);
  console.log(`${m} rounds, main thread / all threads: ${rounds.join('; ')}`);
}
const floor = results.sdkFloor;
if (floor !== undefined) {
  for (const m of ['resourcesOff', 'cpuOnly', 'everythingOn'].filter((k) => results[k] !== undefined)) {
    const r = results[m];
    console.log(
      `${r.label} against the SDK floor: main thread ${(r.mainPerJob / floor.mainPerJob).toFixed(3)}, all threads ${(r.allThreadsPerJob / floor.allThreadsPerJob).toFixed(3)}`,
    );
  }
}
const file = fileURLToPath(new URL('./instructions-last-run.json', import.meta.url));
writeFileSync(file, JSON.stringify({ date: new Date().toISOString(), node: process.version, jobs: JOBS, rounds: ROUNDS, processes: PROCESSES, results, seconds: Math.round((performance.now() - started) / 1000) }, null, 2) + '\n');
console.log(`written to ${file}`);
