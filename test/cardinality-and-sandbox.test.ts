// The job-name cap with thousands of names, sandboxed processors, and stalled jobs.
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { histogram, type Otel, points, setupOtel, total } from './helpers/otel.js';
import { connection, queueName, until } from './helpers/redis.js';

let otel: Otel;
const closers: Array<() => Promise<unknown>> = [];
beforeAll(() => {
  otel = setupOtel({ maxJobNamesPerQueue: 50 });
});
afterAll(async () => {
  for (const close of closers.reverse()) await close().catch(() => {});
  await otel.shutdown();
});

describe('cardinality', () => {
  it('caps job names per queue: 3000 distinct names give 50 series plus _OTHER, and no job id is an attribute', async () => {
    const name = queueName('names');
    const queue = new otel.bullmq.Queue(name, { connection: connection() });
    const jobs = Array.from({ length: 3000 }, (_, i) => ({ name: `generated-${i}`, data: { userId: `user-${i}` }, opts: { jobId: `id-${i}` } }));
    await queue.addBulk(jobs);
    let done = 0;
    const worker = new otel.bullmq.Worker(name, async () => {}, { connection: connection(), concurrency: 50 });
    worker.on('completed', () => done++);
    closers.push(async () => {
      await worker.close();
      await queue.obliterate({ force: true });
      await queue.close();
    });
    await until(() => done === 3000, 60_000, '3000 jobs');
    const m = await otel.collect();
    const consumed = points(m.get('messaging.client.consumed.messages'), { 'messaging.destination.name': name });
    const names = new Set(consumed.map((p) => p.attributes['queue.job.name']));
    expect(names.size).toBe(51);
    expect(names.has('_OTHER')).toBe(true);
    expect(total(m.get('messaging.client.consumed.messages'), { 'messaging.destination.name': name })).toBe(3000);
    expect(total(m.get('messaging.client.consumed.messages'), { 'messaging.destination.name': name, 'queue.job.name': '_OTHER' })).toBe(2950);
    expect(total(m.get('messaging.client.sent.messages'), { 'messaging.destination.name': name })).toBe(3000);
    for (const metric of m.values()) {
      for (const p of metric.dataPoints) {
        const values = Object.values(p.attributes).map(String);
        expect(values.some((v) => v.startsWith('id-') || v.startsWith('user-'))).toBe(false);
      }
    }
    // Spans keep the real name and id: they are per job by nature.
    const span = otel.spans.getFinishedSpans().find((s) => s.name === `process ${name}` && s.attributes['queue.job.name'] === 'generated-2999');
    expect(span?.attributes['messaging.message.id']).toBe('id-2999');
  });
});

describe('sandboxed processors', () => {
  for (const useWorkerThreads of [false, true]) {
    it(`${useWorkerThreads ? 'worker thread' : 'child process'}: the span and metrics are made in the parent, results and errors pass through`, async () => {
      const name = queueName(useWorkerThreads ? 'thread' : 'child');
      const queue = new otel.bullmq.Queue(name, { connection: connection() });
      const processor = fileURLToPath(new URL('./fixtures/sandboxed-processor.cjs', import.meta.url));
      const worker = new otel.bullmq.Worker(name, processor, { connection: connection(), useWorkerThreads });
      closers.push(async () => {
        await worker.close();
        await queue.obliterate({ force: true });
        await queue.close();
      });
      const results: unknown[] = [];
      const failures: string[] = [];
      worker.on('completed', (_j, r) => results.push(r));
      worker.on('failed', (_j, e) => failures.push(e.message));
      await queue.add('double', { n: 21 });
      await queue.add('double', { fail: true });
      await until(() => results.length === 1 && failures.length === 1, 20_000, 'sandboxed jobs');
      expect((results[0] as { doubled: number }).doubled).toBe(42);
      expect(failures).toEqual(['sandboxed failure']);
      // BullMQ emits `failed` before the attempt (and its span) ends.
      const spansOf = () => otel.spans.getFinishedSpans().filter((s) => s.name === `process ${name}`);
      await until(() => spansOf().length === 2, 5_000, 'two process spans');
      const spans = spansOf();
      expect(spans.map((s) => s.attributes['queue.job.outcome']).sort()).toEqual(['completed', 'failed']);
      const m = await otel.collect();
      const d = histogram(m.get('messaging.process.duration'), { 'messaging.destination.name': name, 'queue.job.outcome': 'completed' });
      expect(d.count).toBe(1);
      expect(d.sum).toBeGreaterThanOrEqual(0.045); // the processor sleeps 50 ms in the child
    });
  }
});

describe('stalled jobs', () => {
  it('counts a job whose worker stopped renewing its lock', async () => {
    const name = queueName('stalled');
    const queue = new otel.bullmq.Queue(name, { connection: connection() });
    // A worker that takes a job and never finishes or renews it: a crashed process, as Redis sees it.
    const dead = new otel.bullmq.Worker(name, null, { connection: connection(), lockDuration: 500 });
    await queue.add('stuck', {});
    const token = 'dead-token';
    const job = await dead.getNextJob(token);
    expect(job).toBeDefined();
    const checker = new otel.bullmq.Worker(name, async () => {}, { connection: connection(), stalledInterval: 300, lockDuration: 500 });
    let stalled = 0;
    checker.on('stalled', () => stalled++);
    closers.push(async () => {
      await checker.close();
      await dead.close();
      await queue.obliterate({ force: true });
      await queue.close();
    });
    await until(() => stalled >= 1, 15_000, 'stalled event');
    const m = await otel.collect();
    expect(total(m.get('queue.job.stalled'), { 'messaging.destination.name': name, 'messaging.system': 'bullmq' })).toBe(stalled);
    expect(m.get('queue.job.stalled')?.descriptor.unit).toBe('{job}');
  });
});
