// The hook under per-job attribution: which way it runs on this Node, and that, whichever way,
// each callback of a job is one slice of that job and callbacks of other code are nobody's.
import { readFile } from 'node:fs/promises';
import { setImmediate as immediate, setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type LoopTenant,
  acquireLoopAttribution,
  loopHooksSettled,
  runAsSlice,
  runWithTenant,
} from '../src/core/resources/loop-attribution.js';

class Tenant implements LoopTenant {
  attributable = true;
  recentBytes = 0;
  slices = 0;
  ms = 0;
  addLoopTime(ms: number): void {
    this.slices++;
    this.ms += ms;
  }
  addHeap(): void {}
}

let release: () => void;
let cheaper: boolean;
beforeAll(async () => {
  release = acquireLoopAttribution(true);
  cheaper = await loopHooksSettled();
});
afterAll(() => release());

/** Node 24's AsyncLocalStorage is built on AsyncContextFrame unless turned off by a flag. */
const asyncContextFrame =
  Number(process.versions.node.split('.')[0]) >= 24 &&
  !`${process.execArgv.join(' ')} ${process.env.NODE_OPTIONS ?? ''}`.includes('--no-async-context-frame');

describe('loop hooks', () => {
  it(`use V8's promise hooks where AsyncLocalStorage is built on AsyncContextFrame (here: ${asyncContextFrame}), Node's async hook elsewhere`, () => {
    expect(cheaper).toBe(asyncContextFrame);
  });

  it.each([
    ['two promise reactions', 3, async () => {
      await null;
      await Promise.resolve();
    }],
    ['a timer, then its reaction', 3, async () => {
      await sleep(5);
    }],
    ['a timer callback, then a reaction', 3, async () => {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }],
    ['an immediate, then its reaction', 3, async () => {
      await immediate();
    }],
  ] as const)('count each callback of a job as one slice: its start, %s = %i', async (_, slices, body) => {
    const job = new Tenant();
    const other = new Tenant();
    const run = (tenant: Tenant) => runWithTenant(tenant, () => runAsSlice(tenant, body));
    // Another job interleaved with it: its callbacks must not land in the first one's count.
    await Promise.all([run(job), run(other)]);
    expect(job.slices).toBe(slices);
    expect(other.slices).toBe(slices);
  });

  it('count the I/O callbacks of a job as its slices (readFile: several reads, each a callback and a reaction)', async () => {
    const job = new Tenant();
    await runWithTenant(job, () => runAsSlice(job, async () => {
      await readFile(new URL(import.meta.url));
    }));
    expect(job.slices).toBeGreaterThan(3);
    expect(job.slices).toBeLessThan(100);
  });

  it('give code outside any job no slices, and stop counting once the attempt ended', async () => {
    const job = new Tenant();
    let resume!: () => void;
    const parked = new Promise<void>((resolve) => (resume = resolve));
    const running = runWithTenant(job, () =>
      runAsSlice(job, async () => {
        await parked;
        await null;
      }),
    );
    await sleep(1); // outside the job: nothing is counted
    expect(job.slices).toBe(1);
    job.attributable = false; // the attempt ended (as Attempt.ended does)
    resume();
    await running;
    expect(job.slices).toBe(1);
  });
});
