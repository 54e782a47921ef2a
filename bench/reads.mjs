// Instructions per call of the two readings per-job attribution takes at each slice's start and
// end (loop-attribution.ts): `v8.getHeapStatistics()` (the used heap, for memory) and
// `performance.now()` (the slice's time), against an empty call, so that docs/cost.md can say
// what a slice costs before any of queue-otel's own work; and of the rest of what attribution
// adds per job: entering an AsyncLocalStorage store (alone, and inside OpenTelemetry's
// `context.with`, as a job's processor runs), and a promise reaction with Node's promise hooks on
// (the hooks run around every reaction of the process) against one without.
//
// Run: `node bench/reads.mjs` (needs valgrind; no build, no Redis; about 4 minutes on a 2-core machine). Each reading runs
// in a process of its own under `valgrind --tool=callgrind`, twice (BENCH_READS_SMALL and
// BENCH_READS_LARGE calls, default 10,000 and 60,000); the difference of the two totals over the
// difference of the calls is the cost of one call, start-up cancelled out.

import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AsyncLocalStorage } from 'node:async_hooks';
import { createRequire } from 'node:module';
import { getHeapStatistics, promiseHooks } from 'node:v8';
import { callgrindInstructions } from './common.mjs';

const require = createRequire(import.meta.url);
const api = require('@opentelemetry/api');
const { AsyncLocalStorageContextManager } = require('@opentelemetry/context-async-hooks');
const store = new AsyncLocalStorage();
const otelContext = api.ROOT_CONTEXT.setValue(api.createContextKey('bench'), 1);
const one = () => 1;

const READINGS = {
  empty: () => 1,
  'performance.now()': () => performance.now(),
  'v8.getHeapStatistics()': () => {
    const stats = getHeapStatistics();
    return stats.used_heap_size + stats.external_memory;
  },
  'context.with()': () => api.context.with(otelContext, one),
  'store.run(context.with())': () => store.run(otelContext, () => api.context.with(otelContext, one)),
};

/** Per call: one promise reaction (a `.then` on a chain), without and with promise hooks. */
const REACTIONS = {
  'promise reaction': false,
  'promise reaction, hooks on': true,
};

if (process.env.BENCH_READS_RUN) {
  // The child: call one reading N times.
  const name = process.env.BENCH_READS_RUN;
  const n = Number(process.env.BENCH_READS_N);
  api.context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  if (name in REACTIONS) {
    if (REACTIONS[name]) promiseHooks.createHook({ before() {}, after() {} });
    let chain = Promise.resolve(0);
    for (let i = 0; i < n; i++) chain = chain.then((x) => x + 1);
    if ((await chain) !== n) throw new Error('lost a reaction');
  } else {
    const read = READINGS[name];
    let sum = 0;
    for (let i = n; i > 0; i--) sum += read();
    if (!(sum > 0)) throw new Error('no reading');
  }
} else {
  const small = Number(process.env.BENCH_READS_SMALL || 10_000);
  const large = Number(process.env.BENCH_READS_LARGE || 60_000);
  const dir = mkdtempSync(join(tmpdir(), 'queue-otel-reads-'));
  const self = fileURLToPath(import.meta.url);
  const total = (name, n) => {
    const out = join(dir, `cg.${n}`);
    execFileSync('valgrind', ['--tool=callgrind', `--callgrind-out-file=${out}`, process.execPath, self], {
      env: { ...process.env, BENCH_READS_RUN: name, BENCH_READS_N: String(n) },
      stdio: 'ignore',
    });
    return callgrindInstructions(out);
  };
  try {
    console.log(`instructions per call (Node ${process.version}), ${small.toLocaleString('en-US')} and ${large.toLocaleString('en-US')} calls`);
    const fmt = (x) => Math.round(x).toLocaleString('en-US').padStart(7);
    const perCall = (name) => (total(name, large) - total(name, small)) / (large - small);
    const empty = perCall('empty');
    console.log(`${'empty'.padEnd(28)} ${fmt(empty)}`);
    for (const name of Object.keys(READINGS).filter((k) => k !== 'empty')) {
      const cost = perCall(name);
      console.log(`${name.padEnd(28)} ${fmt(cost)}   ${fmt(cost - empty)} above the empty call`);
    }
    let plain = 0;
    for (const [name, hooked] of Object.entries(REACTIONS)) {
      const cost = perCall(name);
      if (!hooked) plain = cost;
      console.log(`${name.padEnd(28)} ${fmt(cost)}${hooked ? `   ${fmt(cost - plain)} above one without hooks` : ''}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
