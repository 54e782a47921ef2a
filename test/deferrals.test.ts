// Deferrals are not retries (BullMQ): a processor that puts its job off on purpose (a delay, its
// children, a rate limit) ends its attempt with outcome `deferred` and a reason, not `retried`, and
// no error; a queue's rate limiter shows how often and how long it held the worker back.
import { SpanStatusCode } from '@opentelemetry/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { histogram, type Otel, setupOtel, total } from './helpers/otel.js';
import { connection, queueName, until } from './helpers/redis.js';

let otel: Otel;
const closers: Array<() => Promise<unknown>> = [];
beforeAll(() => {
  otel = setupOtel({ queueState: false });
});
afterAll(async () => {
  for (const close of closers.reverse()) await close().catch(() => {});
  await otel.shutdown();
});

function track<T extends { close(): Promise<unknown> }>(object: T, queue?: { obliterate(o: object): Promise<unknown> }): T {
  closers.push(async () => {
    await object.close();
    await queue?.obliterate({ force: true }).catch(() => {});
  });
  return object;
}

const processSpans = (queue: string) => otel.spans.getFinishedSpans().filter((s) => s.name === `process ${queue}`);

describe('deferred attempts', () => {
  it('a job moved to delayed by its processor: outcome deferred (delayed), then completed; no error, no retry', async () => {
    const { Queue, Worker, DelayedError } = otel.bullmq;
    const name = queueName('defer-delayed');
    const queue = track(new Queue(name, { connection: connection() }));
    let calls = 0;
    const worker = new Worker(
      name,
      async (job, token) => {
        if (calls++ === 0) {
          await job.moveToDelayed(Date.now() + 200, token);
          throw new DelayedError();
        }
        return 'done';
      },
      { connection: connection() },
    );
    track(worker, queue);
    let completed = false;
    worker.on('completed', () => (completed = true));
    await queue.add('later', {});
    await until(() => completed && processSpans(name).length === 2, 10_000, 'two attempts');
    const spans = processSpans(name).sort((a, b) => a.startTime[0] - b.startTime[0] || a.startTime[1] - b.startTime[1]);
    expect(spans.map((s) => s.attributes['queue.job.outcome'])).toEqual(['deferred', 'completed']);
    expect(spans[0]!.attributes['queue.job.deferral']).toBe('delayed');
    expect(spans[0]!.attributes['error.type']).toBeUndefined();
    expect(spans[0]!.status.code).toBe(SpanStatusCode.UNSET);
    const m = await otel.collect();
    const attrs = { 'messaging.destination.name': name, 'queue.job.name': 'later' };
    expect(histogram(m.get('messaging.process.duration'), { ...attrs, 'queue.job.outcome': 'deferred', 'queue.job.deferral': 'delayed' }).count).toBe(1);
    expect(histogram(m.get('messaging.process.duration'), { ...attrs, 'queue.job.outcome': 'retried' }).count).toBe(0);
    // Attempts are counted when a job is done: once, on completion.
    expect(histogram(m.get('queue.job.attempts'), attrs).count).toBe(1);
  });

  it('a processor that hits a rate limit of its own: outcome deferred (rate_limited), and the wait is measured', async () => {
    const { Queue, Worker } = otel.bullmq;
    const name = queueName('defer-ratelimit');
    const queue = track(new Queue(name, { connection: connection() }));
    let calls = 0;
    const worker: InstanceType<typeof Worker<unknown, unknown>> = new Worker<unknown, unknown>(
      name,
      async () => {
        if (calls++ === 0) {
          await (typeof queue.rateLimit === 'function' ? queue.rateLimit(300) : worker.rateLimit(300));
          throw Worker.RateLimitError();
        }
        return 'ok';
      },
      { connection: connection() },
    );
    track(worker, queue);
    let completed = false;
    worker.on('completed', () => (completed = true));
    await queue.add('limited', {});
    await until(() => completed, 10_000, 'completion');
    await until(() => processSpans(name).length === 2, 5_000, 'spans');
    const m = await otel.collect();
    const attrs = { 'messaging.destination.name': name, 'queue.job.name': 'limited' };
    expect(histogram(m.get('messaging.process.duration'), { ...attrs, 'queue.job.outcome': 'deferred', 'queue.job.deferral': 'rate_limited' }).count).toBe(1);
    expect(histogram(m.get('messaging.process.duration'), { ...attrs, 'queue.job.outcome': 'completed' }).count).toBe(1);
    const waits = histogram(m.get('queue.worker.rate_limit.duration'), { 'messaging.destination.name': name });
    expect(waits.count).toBeGreaterThanOrEqual(1);
    expect(waits.sum).toBeGreaterThan(0.1);
  });

  it("a queue's limiter: how often and how long it held the worker back", async () => {
    const { Queue, Worker } = otel.bullmq;
    const name = queueName('limiter');
    const queue = track(new Queue(name, { connection: connection() }));
    let done = 0;
    const worker = new Worker(name, async () => 'ok', { connection: connection(), limiter: { max: 1, duration: 400 } });
    track(worker, queue);
    worker.on('completed', () => done++);
    await queue.addBulk(Array.from({ length: 4 }, (_, i) => ({ name: 'paced', data: { i } })));
    await until(() => done === 4, 15_000, 'four jobs');
    const m = await otel.collect();
    const waits = histogram(m.get('queue.worker.rate_limit.duration'), { 'messaging.destination.name': name });
    // Four jobs at one per 400 ms: the worker waits before the 2nd, 3rd and 4th (about 1.2 s in
    // all); timing on a shared machine is loose, so only the shape is asserted.
    expect(waits.count).toBeGreaterThanOrEqual(2);
    expect(waits.sum).toBeGreaterThan(0.3);
    expect(m.get('queue.worker.rate_limit.duration')?.descriptor.unit).toBe('s');
    // The jobs themselves completed: the limiter is not a failure.
    expect(histogram(m.get('messaging.process.duration'), { 'messaging.destination.name': name, 'queue.job.outcome': 'completed' }).count).toBe(4);
    expect(total(m.get('messaging.client.consumed.messages'), { 'messaging.destination.name': name })).toBe(4);
  });
});
