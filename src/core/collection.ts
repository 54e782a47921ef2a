import type { BatchObservableResult } from '@opentelemetry/api';
import type { CoreContext } from './context.js';
import type { LiveInstruments } from './instruments.js';
import type { QueueStats } from './queue-stats.js';
import type { SandboxTotals } from './resources/sandboxes.js';
import type { JobSeries } from './series.js';

/**
 * The batch callback of the live instruments: O(queues + series + running sandboxed jobs),
 * whatever the number of running jobs on this loop (their totals are kept per series as they run).
 * `stats` is undefined while queue state is off.
 */
export function observe(core: CoreContext, stats: QueueStats | undefined, result: BatchObservableResult, live: LiveInstruments): void | Promise<void> {
  try {
    const now = performance.now();
    const { jobCpu, jobMemory } = core.config;
    const resources = core.resourcesOn;
    const sandboxed = resources && core.sandboxes.size > 0 ? (core.sandboxes.read() as Map<JobSeries, SandboxTotals>) : undefined;
    const observeResources = (series: JobSeries, threadBytes: number) => {
      const extra = sandboxed?.get(series);
      if (jobCpu) result.observe(live.cpuTime, series.cpuSeconds(extra?.cpuMs ?? 0), series.attributes);
      if (jobMemory) result.observe(live.memoryUsage, series.heldBytes + (extra?.memoryBytes ?? 0) + threadBytes, series.attributes);
    };
    const pendingMemory: Array<Promise<void>> = [];
    if (stats !== undefined) {
      for (const state of stats.collect()) {
        for (const count of state.counts) result.observe(live.jobCount, count.value, count.attributes);
        if (state.oldestAgeS !== undefined) result.observe(live.oldestAge, state.oldestAgeS, state.attributes);
        if (state.failedOldestAgeS !== undefined) result.observe(live.failedOldestAge, state.failedOldestAgeS, state.attributes);
      }
    }
    for (const queue of core.tracker.allQueues()) {
      result.observe(live.concurrency, queue.concurrency(), queue.attributes);
      for (const series of queue.allSeries()) {
        if (!series.consumed) continue;
        result.observe(live.busyTime, series.busySeconds(now), series.attributes);
        result.observe(live.active, series.running, series.attributes);
        result.observe(live.runningOldest, series.oldestRunningSeconds(now), series.attributes);
        if (series.delivered > 0) result.observe(live.consumedMessages, series.delivered, series.processAttributes);
        if (!resources) continue;
        const threads = sandboxed?.get(series)?.threadMemory;
        if (threads === undefined || !jobMemory) observeResources(series, 0);
        else pendingMemory.push(Promise.all(threads).then((bytes) => observeResources(series, sum(bytes))));
      }
    }
    if (pendingMemory.length > 0) {
      return Promise.all(pendingMemory).then(
        () => undefined,
        (error: unknown) => core.report.error('metric collection failed', error),
      );
    }
  } catch (error) {
    core.report.error('metric collection failed', error);
  }
}

function sum(values: number[]): number {
  return values.reduce((a, b) => a + b, 0);
}
