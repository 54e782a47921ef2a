// Instructions per call of the two readings per-job attribution takes at each slice's start and
// end (loop-attribution.ts): `v8.getHeapStatistics()` (the used heap, for memory) and
// `performance.now()` (the slice's time), against an empty call, so that docs/cost.md can say
// what a slice costs before any of queue-otel's own work.
//
// Run: `node bench/reads.mjs` (needs valgrind; no build, no Redis; about 30 s). Each reading runs
// in a process of its own under `valgrind --tool=callgrind`, twice (BENCH_READS_SMALL and
// BENCH_READS_LARGE calls, default 10,000 and 60,000); the difference of the two totals over the
// difference of the calls is the cost of one call, start-up cancelled out.

import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { getHeapStatistics } from 'node:v8';

const READINGS = {
  empty: () => 1,
  'performance.now()': () => performance.now(),
  'v8.getHeapStatistics()': () => {
    const stats = getHeapStatistics();
    return stats.used_heap_size + stats.external_memory;
  },
};

if (process.env.BENCH_READS_RUN) {
  // The child: call one reading N times.
  const read = READINGS[process.env.BENCH_READS_RUN];
  let sum = 0;
  for (let i = Number(process.env.BENCH_READS_N); i > 0; i--) sum += read();
  if (!(sum > 0)) throw new Error('no reading');
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
    return Number(/^(?:summary|totals):\s*(\d+)/m.exec(readFileSync(out, 'utf8'))[1]);
  };
  try {
    console.log(`instructions per call (Node ${process.version}), ${small.toLocaleString('en-US')} and ${large.toLocaleString('en-US')} calls`);
    let empty = 0;
    for (const name of Object.keys(READINGS)) {
      const perCall = (total(name, large) - total(name, small)) / (large - small);
      if (name === 'empty') empty = perCall;
      const above = name === 'empty' ? '' : `   ${Math.round(perCall - empty).toLocaleString('en-US').padStart(7)} above the empty call`;
      console.log(`${name.padEnd(24)} ${Math.round(perCall).toLocaleString('en-US').padStart(7)}${above}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
