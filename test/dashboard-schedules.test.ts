// The live dashboard's schedule panel: the lag of each schedule's latest run, held until it runs
// again (a schedule runs seldom), its runs, when it last ran and the runs its scheduler missed.
import { describe, expect, it } from 'vitest';
import { type Collection, DashboardModel, type PointLike } from '../src/dashboard/model.js';

const q = { 'messaging.system': 'graphile-worker', 'messaging.destination.name': 'graphile_worker' };
const schedule = (name: string) => ({ ...q, 'queue.schedule.name': name });
const lag = (count: number, sum: number) => ({ count, sum, buckets: { boundaries: [60, 300], counts: [count, 0, 0] } });

function at(points: { billing: [number, number]; digest?: [number, number]; missed?: number }): Collection {
  const lags: PointLike[] = [{ attributes: schedule('billing'), value: lag(...points.billing) }];
  if (points.digest) lags.push({ attributes: schedule('digest'), value: lag(...points.digest) });
  return new Map<string, PointLike[]>([
    ['queue.schedule.lag', lags],
    ['queue.schedule.missed', points.missed === undefined ? [] : [{ attributes: schedule('billing'), value: points.missed }]],
  ]);
}

describe('DashboardModel schedules', () => {
  it('holds the lag of each latest run until the next one, and counts runs and missed runs', () => {
    const model = new DashboardModel(2);
    model.add(1_000_000, at({ billing: [1, 240] })); // one run, 4 min late
    model.add(1_002_000, at({ billing: [1, 240] })); // nothing ran
    model.add(1_004_000, at({ billing: [3, 250], digest: [1, 0.5], missed: 2 })); // two runs of 5 s each
    model.add(1_006_000, at({ billing: [3, 250], digest: [1, 0.5], missed: 2 }));
    const [view] = model.snapshot().queues;
    expect(view!.scheduleLag.billing).toEqual([240, 240, 5, 5]);
    expect(view!.scheduleLag.digest).toEqual([null, null, 0.5, 0.5]);
    expect(view!.schedules).toEqual([
      { name: 'billing', runs: 3, lastLag: 5, lastRunAt: 1004, missed: 2 },
      { name: 'digest', runs: 1, lastLag: 0.5, lastRunAt: 1004, missed: 0 },
    ]);
  });

  it('a queue without schedules has no schedule lines or rows', () => {
    const model = new DashboardModel(2);
    model.add(1_000_000, new Map([['queue.worker.concurrency', [{ attributes: q, value: 1 }]]]));
    const [view] = model.snapshot().queues;
    expect(view!.scheduleLag).toEqual({});
    expect(view!.schedules).toEqual([]);
  });
});
