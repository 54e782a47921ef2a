// Per-job CPU and memory: on the shared event loop (an attribution, validated by experiment) and
// in sandboxed processes and threads (read from the parent, checked against what they report).
import { fileURLToPath } from 'node:url';
import type { ReadableSpan } from '@opentelemetry/sdk-trace';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Otel, histogram, points, setupOtel, total } from './helpers/otel.js';
import { connection, queueName, sleep, until } from './helpers/redis.js';

let otel: Otel;
const closers: Array<() => Promise<unknown>> = [];
beforeAll(() => {
  otel = setupOtel();
});
afterAll(async () => {
  for (const close of closers.reverse()) await close().catch(() => {});
  await otel.shutdown();
});

/** A row of about 1.1 KB on the V8 heap (180,000 hold about 200 MB, measured with a forced GC). */
type Row = { id: number; name: string; values: number[] };
const row = (id: number): Row => ({ id, name: `row-${id}`, values: Array.from({ length: 120 }, (_, k) => id + k) });

function spin(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end);
}

function queueWithWorker(label: string, processor: any, opts: object = {}) {
  const name = queueName(label);
  const queue = new otel.bullmq.Queue(name, { connection: connection() });
  const worker = new otel.bullmq.Worker(name, processor, { connection: connection(), ...opts });
  closers.push(async () => {
    await worker.close();
    await queue.obliterate({ force: true });
    await queue.close();
  });
  return { name, queue, worker };
}

const spansOf = (queue: string): ReadableSpan[] => otel.spans.getFinishedSpans().filter((s) => s.name === `process ${queue}`);
const byJob = (spans: ReadableSpan[], jobName: string) => spans.filter((s) => s.attributes['queue.job.name'] === jobName);

describe('CPU on the shared event loop', () => {
  it('a job that spins 300 ms gets about 0.3 s (within 15%); a job awaiting a 300 ms timer beside it gets almost nothing', async () => {
    const { name, queue } = queueWithWorker(
      'cpu',
      async (job: { name: string }) => {
        if (job.name === 'spin') {
          spin(100); // the synchronous start, before any await
          await sleep(10);
          spin(100);
          await Promise.resolve();
          spin(100);
        } else {
          await sleep(300);
        }
      },
      { concurrency: 4 },
    );
    await queue.addBulk([{ name: 'spin', data: {} }, { name: 'wait', data: {} }, { name: 'wait', data: {} }]);
    await until(() => spansOf(name).length === 3, 15_000, 'three jobs');
    const [spinSpan] = byJob(spansOf(name), 'spin');
    const spinCpu = Number(spinSpan!.attributes['queue.job.cpu.time']);
    expect(spinCpu).toBeGreaterThan(0.3 * 0.85);
    expect(spinCpu).toBeLessThan(0.3 * 1.15);
    for (const w of byJob(spansOf(name), 'wait')) expect(Number(w.attributes['queue.job.cpu.time'])).toBeLessThan(0.02);

    const m = await otel.collect();
    expect(m.get('queue.job.cpu.time')?.descriptor.unit).toBe('s');
    const cpuSpin = total(m.get('queue.job.cpu.time'), { 'messaging.destination.name': name, 'queue.job.name': 'spin' });
    expect(Math.abs(cpuSpin - spinCpu)).toBeLessThan(0.001);
    expect(total(m.get('queue.job.cpu.time'), { 'messaging.destination.name': name, 'queue.job.name': 'wait' })).toBeLessThan(0.04);
  });

  it('counts CPU of a running job at each collection, not only when it ends', async () => {
    let stop = false;
    const { name, queue } = queueWithWorker('cpu-live', async () => {
      while (!stop) {
        spin(50);
        await sleep(5);
      }
    });
    await queue.add('crunch', {});
    const attrs = { 'messaging.destination.name': name, 'queue.job.name': 'crunch' };
    await until(async () => total((await otel.collect()).get('queue.job.active'), attrs) === 1, 10_000, 'start');
    await sleep(500);
    const first = total((await otel.collect()).get('queue.job.cpu.time'), attrs);
    await sleep(500);
    const second = total((await otel.collect()).get('queue.job.cpu.time'), attrs);
    stop = true;
    expect(first).toBeGreaterThan(0.2);
    expect(second - first).toBeGreaterThan(0.2); // the job spins about 90% of each interval
  });
});

describe('memory on the shared event loop', () => {
  // The experiment from the issue (also in examples/memory-cliff): 20 jobs that each hold about
  // 1 MB for a second, beside one job that builds about 200 MB over two seconds.
  it('the job that builds 200 MB is on top while it runs and when it ends, with at least 100 MB, every time', async () => {
    let bigSteps = 0;
    const { name, queue } = queueWithWorker(
      'memory',
      async (job: { name: string }) => {
        if (job.name === 'small') {
          const held = Array.from({ length: 1000 }, (_, i) => row(i)); // about 1.1 MB
          await sleep(1000);
          return held.length;
        }
        const rows: Row[] = [];
        for (let step = 0; step < 20; step++) {
          for (let i = 0; i < 9_000; i++) rows.push(row(step * 9_000 + i)); // about 10 MB a step
          bigSteps = step + 1;
          await sleep(100);
        }
        return rows.length;
      },
      { concurrency: 30 },
    );
    const attrs = { 'messaging.destination.name': name };
    for (let rep = 0; rep < 3; rep++) {
      bigSteps = 0;
      const before = spansOf(name).length;
      await queue.addBulk([{ name: 'big', data: {} }, ...Array.from({ length: 20 }, () => ({ name: 'small', data: {} }))]);
      await until(async () => total((await otel.collect()).get('queue.job.active'), { ...attrs, 'queue.job.name': 'small' }) === 20, 10_000, 'small jobs running');
      await sleep(400);
      let usage = (await otel.collect()).get('queue.job.memory.usage');
      const bigEarly = total(usage, { ...attrs, 'queue.job.name': 'big' });
      const smallEach = total(usage, { ...attrs, 'queue.job.name': 'small' }) / 20;
      expect(bigEarly).toBeGreaterThan(smallEach);
      // Once it has built about 100 MB (by its progress, not by the clock: a loaded machine builds
      // slower), the big job holds more than half of that.
      await until(() => bigSteps >= 10, 15_000, 'the big job half way');
      usage = (await otel.collect()).get('queue.job.memory.usage');
      expect(total(usage, { ...attrs, 'queue.job.name': 'big' })).toBeGreaterThan(50e6);
      await until(() => spansOf(name).length === before + 21, 15_000, 'all 21 jobs');
      const ended = spansOf(name).slice(before);
      const bigPeak = Number(byJob(ended, 'big')[0]!.attributes['queue.job.memory.peak']);
      const smallPeaks = byJob(ended, 'small').map((s) => Number(s.attributes['queue.job.memory.peak']));
      expect(bigPeak).toBeGreaterThan(100e6);
      expect(bigPeak).toBeGreaterThan(Math.max(...smallPeaks));
    }
    const m = await otel.collect();
    const peaks = histogram(m.get('queue.job.memory.peak'), { ...attrs, 'queue.job.name': 'big' });
    expect(peaks.count).toBe(3);
    expect(peaks.max).toBeGreaterThan(histogram(m.get('queue.job.memory.peak'), { ...attrs, 'queue.job.name': 'small' }).max);
    expect(m.get('queue.job.memory.peak')?.descriptor.unit).toBe('By');
    // Nothing runs any more: the live gauge reads 0 for every job name, not its last value.
    for (const p of points(m.get('queue.job.memory.usage'), attrs)) expect(p.value).toBe(0);
  });

  // Per-slice attribution over-counts churn (garbage freed during other jobs' slices stays with
  // the job that made it until it ends); docs/metrics.md ("Per-job CPU and memory") gives the measured size of that error.
  it('short-lived garbage is not held memory: jobs that parse and drop about 24 MB each do not outrank a job that keeps 60 MB', async () => {
    const { name, queue } = queueWithWorker(
      'churn',
      async (job: { name: string }) => {
        if (job.name === 'parse') {
          let n = 0;
          for (let k = 0; k < 20; k++) {
            const tmp = JSON.parse(JSON.stringify(Array.from({ length: 5000 }, (_, i) => ({ i, v: `value-${i}` }))));
            n += tmp.length;
            await sleep(10);
          }
          return n;
        }
        const kept: Row[] = [];
        for (let step = 0; step < 6; step++) {
          for (let i = 0; i < 9_000; i++) kept.push(row(step * 9_000 + i)); // about 60 MB in all
          await sleep(50);
        }
        return kept.length;
      },
      { concurrency: 10 },
    );
    await queue.addBulk([{ name: 'keep', data: {} }, ...Array.from({ length: 8 }, () => ({ name: 'parse', data: {} }))]);
    await until(() => spansOf(name).length === 9, 20_000, 'nine jobs');
    const keepPeak = Number(byJob(spansOf(name), 'keep')[0]!.attributes['queue.job.memory.peak']);
    const parsePeaks = byJob(spansOf(name), 'parse').map((s) => Number(s.attributes['queue.job.memory.peak']));
    // It keeps about 60 MB. Freed garbage is shared among the jobs that allocated recently, so the
    // keeper loses a part of it (measured 18-45 MB, less on a loaded machine); the ranking holds.
    expect(keepPeak, `keep ${keepPeak}`).toBeGreaterThan(12e6);
    expect(keepPeak, `keep ${keepPeak}, parse ${parsePeaks.map((p) => Math.round(p / 1e6)).join(",")}`).toBeGreaterThan(Math.max(...parsePeaks));
  });
});

describe('sandboxed processors: usage read from the parent', () => {
  const processor = fileURLToPath(new URL('./fixtures/resource-processor.cjs', import.meta.url));
  for (const useWorkerThreads of [false, true]) {
    it(`${useWorkerThreads ? 'worker thread' : 'child process'}: CPU and memory match what the sandbox reports of itself`, async () => {
      const { name, queue, worker } = queueWithWorker(useWorkerThreads ? 'res-thread' : 'res-child', processor, { useWorkerThreads });
      const results: Array<{ cpuMs: number; rss: number; heapUsed: number }> = [];
      worker.on('completed', (_j, r) => results.push(r));
      await queue.add('crunch', { spinMs: 400, holdMb: 40 });
      await until(() => results.length === 1 && spansOf(name).length === 1, 20_000, 'sandboxed job');
      const [span] = spansOf(name);
      const self = results[0]!;
      const cpu = Number(span!.attributes['queue.job.cpu.time']);
      // The job spins 400 ms. The sandbox measures its own CPU inside the processor; ours runs
      // from handing the job over to its result, so it also holds the sandbox's own handling of
      // the job (measured up to 0.11 s more on a quiet machine, 0.20 s at a load average of 12 on
      // 2 cores) and 10 ms clock ticks.
      expect(cpu).toBeGreaterThan(0.34);
      expect(cpu - self.cpuMs / 1000).toBeGreaterThan(-0.05);
      expect(cpu - self.cpuMs / 1000).toBeLessThan(0.3);
      const peak = Number(span!.attributes['queue.job.memory.peak']);
      // A thread's figure is its V8 heap, a process's its resident set: compare with the same. The
      // heap includes garbage not yet collected, and the two sides sample at different moments
      // (measured: ours 0.9-1.55x the thread's own maximum), hence the band.
      const own = useWorkerThreads ? self.heapUsed : self.rss;
      expect(peak, `peak ${peak}, the sandbox's own ${own}`).toBeGreaterThan(own * 0.7);
      expect(peak, `peak ${peak}, the sandbox's own ${own}`).toBeLessThan(own * 1.7);
      expect(peak).toBeGreaterThan(20e6); // it holds 40,000 strings of 1,000 characters
      const m = await otel.collect();
      expect(total(m.get('queue.job.cpu.time'), { 'messaging.destination.name': name })).toBeCloseTo(cpu, 3);
    });
  }
});

describe('turned off', () => {
  it('jobCpu and jobMemory false: no resource metrics and no span attributes', async () => {
    otel.instrumentation.setConfig({ jobCpu: false, jobMemory: false });
    try {
      const { name, queue } = queueWithWorker('off', async () => spin(20));
      await queue.add('x', {});
      await until(() => spansOf(name).length === 1, 10_000, 'job');
      expect(spansOf(name)[0]!.attributes['queue.job.cpu.time']).toBeUndefined();
      expect(spansOf(name)[0]!.attributes['queue.job.memory.peak']).toBeUndefined();
      const m = await otel.collect();
      expect(total(m.get('queue.job.cpu.time'), { 'messaging.destination.name': name })).toBe(0);
      expect(histogram(m.get('queue.job.memory.peak'), { 'messaging.destination.name': name }).count).toBe(0);
    } finally {
      otel.instrumentation.setConfig({});
    }
  });
});
