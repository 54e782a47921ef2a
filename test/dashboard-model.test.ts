// The dashboard's arithmetic on collections: rates of cumulative counters and histogram quantiles.
import { describe, expect, it } from 'vitest';
import { type Collection, DashboardModel, type PointLike, quantile } from '../src/dashboard/model.js';

const q = { 'messaging.system': 'bullmq', 'messaging.destination.name': 'emails' };
const job = (name: string, extra: Record<string, unknown> = {}) => ({ ...q, 'queue.job.name': name, ...extra });

function collection(entries: Record<string, PointLike[]>): Collection {
  return new Map(Object.entries(entries));
}

describe('quantile', () => {
  it('interpolates within the bucket, as Prometheus histogram_quantile does', () => {
    // 10 samples <= 1 s, 10 in (1, 2]: the median is at the top of the first bucket, p95 at 1.9 s.
    expect(quantile(0.5, [1, 2, 5], [10, 10, 0, 0])).toBeCloseTo(1, 9);
    expect(quantile(0.95, [1, 2, 5], [10, 10, 0, 0])).toBeCloseTo(1.9, 9);
    expect(quantile(0.5, [1, 2], [0, 0, 4])).toBe(2); // the unbounded bucket reports its lower bound
    expect(quantile(0.5, [1, 2], [0, 0, 0])).toBeNull();
  });
});

describe('DashboardModel', () => {
  it('turns busy time, CPU and attempts into per-second rates, and keeps gauges as they are', () => {
    const model = new DashboardModel(2);
    const at = (busy: number, cpu: number, completed: number, failed: number, memory: number) =>
      collection({
        'queue.job.busy.time': [{ attributes: job('send'), value: busy }],
        'queue.job.cpu.time': [{ attributes: job('send'), value: cpu }],
        'queue.job.memory.usage': [{ attributes: job('send'), value: memory }],
        'queue.worker.concurrency': [{ attributes: q, value: 4 }],
        // Ended attempts by outcome: the count of the process-duration histogram.
        'messaging.process.duration': [
          { attributes: job('send', { 'queue.job.outcome': 'completed' }), value: { count: completed, buckets: { boundaries: [1], counts: [completed, 0] } } },
          { attributes: job('send', { 'queue.job.outcome': 'failed' }), value: { count: failed, buckets: { boundaries: [1], counts: [failed, 0] } } },
        ],
        'queue.job.count': [{ attributes: { ...q, 'queue.job.state': 'waiting' }, value: 7 }],
      });
    model.add(1_000_000, at(0, 0, 0, 0, 1024));
    model.add(1_002_000, at(6, 1, 10, 2, 2048)); // 3 busy workers over 2 s
    model.add(1_004_000, at(14, 1.5, 30, 2, 0)); // 4 busy workers
    const [view] = model.snapshot().queues;
    expect(view!.name).toBe('emails');
    expect(view!.busy.send).toEqual([null, 3, 4]);
    expect(view!.cpu.send).toEqual([null, 0.5, 0.25]);
    expect(view!.memory.send).toEqual([1024, 2048, 0]);
    expect(view!.concurrency).toEqual([4, 4, 4]);
    expect(view!.throughput.completed).toEqual([null, 5, 10]);
    expect(view!.throughput.failed).toEqual([null, 1, 0]);
    expect(view!.depth.waiting).toEqual([7, 7, 7]);
    expect(view!.jobs[0]).toMatchObject({ name: 'send', busy: 4, completed: 7.5, failed: 0.5 });
  });

  it('reads wait quantiles from bucket differences over the window, and keeps at most `capacity` points', () => {
    const model = new DashboardModel(10, 5);
    for (let i = 0; i <= 6; i++) {
      // Each collection adds one wait in (0.1, 0.25] until i = 4, then only waits in (1, 2.5].
      const counts = [0, 0, Math.min(i, 4), Math.max(0, i - 4), 0];
      model.add(i * 10_000, collection({ 'queue.job.wait.duration': [{ attributes: job('send'), value: { count: i, buckets: { boundaries: [0.05, 0.1, 0.25, 2.5], counts } } }] }));
    }
    const snapshot = model.snapshot();
    expect(snapshot.t).toHaveLength(5);
    const [view] = snapshot.queues;
    // Over the last 30 s (i = 3..6): one wait in (0.1, 0.25] and two in (0.25, 2.5]: p50 = 0.25 + 2.25 * 0.5/2.
    expect(view!.wait.p50.at(-1)).toBeCloseTo(0.25 + 2.25 * 0.25, 9);
    expect(view!.wait.p95.at(-1)).toBeCloseTo(0.25 + 2.25 * (0.95 * 3 - 1) / 2, 9);
  });

  it('shows deferred attempts by reason beside the other outcomes, and the rate limiter\'s waits', () => {
    const model = new DashboardModel(2);
    const histogram = (count: number, sum = 0) => ({ count, sum, buckets: { boundaries: [1], counts: [count, 0] } });
    const at = (completed: number, delayed: number, rateLimited: number, waits?: [number, number]) =>
      collection({
        'queue.job.busy.time': [{ attributes: job('sync'), value: completed }],
        'messaging.process.duration': [
          { attributes: job('sync', { 'queue.job.outcome': 'completed' }), value: histogram(completed) },
          ...(delayed > 0 ? [{ attributes: job('sync', { 'queue.job.outcome': 'deferred', 'queue.job.deferral': 'delayed' }), value: histogram(delayed) }] : []),
          ...(rateLimited > 0
            ? [{ attributes: job('sync', { 'queue.job.outcome': 'deferred', 'queue.job.deferral': 'rate_limited' }), value: histogram(rateLimited) }]
            : []),
        ],
        // The worker waited `count` times for the queue's rate limiter, `sum` seconds in all.
        'queue.worker.rate_limit.duration': waits ? [{ attributes: q, value: histogram(...waits) }] : [],
      });
    model.add(1_000_000, at(0, 0, 0));
    model.add(1_002_000, at(10, 0, 0)); // nothing deferred yet, the limiter never waited
    let [view] = model.snapshot().queues;
    expect(view!.throughput.deferred).toBeUndefined();
    expect(view!.rateLimit).toEqual({});
    model.add(1_004_000, at(20, 4, 2, [2, 1])); // 3 deferred a second; 1 wait a second, held half the time
    model.add(1_006_000, at(30, 4, 6, [6, 4])); // 2 deferred a second, all rate-limited
    [view] = model.snapshot().queues;
    expect(view!.throughput.completed).toEqual([null, 5, 5, 5]);
    expect(view!.throughput.deferred).toEqual([null, null, 3, 2]);
    expect(view!.rateLimit.waits).toEqual([null, null, 1, 2]);
    expect(view!.rateLimit.held).toEqual([null, null, 0.5, 1.5]);
    // The table: over the window (all 6 s here), by outcome, and the deferrals by reason.
    expect(view!.jobs[0]).toMatchObject({ name: 'sync', completed: 5, deferred: 10 / 6, deferrals: { delayed: 4 / 6, rate_limited: 1 } });
  });

  it('says how old the state figures may be: one read interval, and for pg-boss its monitor interval on top', () => {
    const model = new DashboardModel(2, 300, 15);
    const depth = (system: string, queue: string) => ({
      attributes: { 'messaging.system': system, 'messaging.destination.name': queue, 'queue.job.state': 'waiting' },
      value: 3,
    });
    model.add(1_000_000, collection({ 'queue.job.count': [depth('bullmq', 'emails'), depth('pg-boss', 'billing')] }));
    const snapshot = model.snapshot();
    expect(snapshot.stateIntervalS).toBe(15);
    expect(Object.fromEntries(snapshot.queues.map((v) => [v.name, v.stateMaxAgeS]))).toEqual({
      emails: { counts: 15, oldest: 15 },
      billing: { counts: 75, oldest: 15 },
    });
  });
});
