import type { Reporter } from '../report.js';
import type { Isolate, IsolateReading } from './isolates.js';

/** A running attempt whose job runs in a sandboxed process or thread. */
export interface SandboxedAttempt<S> {
  readonly isolate: Isolate | undefined;
  readonly series: S;
  peakBytes: number;
  /** CPU of its sandbox since the job was handed over, from one reading. */
  isolateCpu(reading: IsolateReading): number | undefined;
}

/** What the running sandboxed jobs of one series use now. */
export interface SandboxTotals {
  cpuMs: number;
  memoryBytes: number;
  /** Memory of worker threads, read asynchronously. */
  threadMemory: Array<Promise<number>> | undefined;
}

/** How often a running sandboxed job's memory is sampled, so a peak it releases is still seen. */
const SAMPLE_MS = 250;

/**
 * The attempts whose jobs run in a process or thread of their own: read at collection, and
 * sampled while any runs.
 */
export class SandboxSampler<S = unknown> {
  private readonly running = new Set<SandboxedAttempt<S>>();
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly report: Reporter) {}

  get size(): number {
    return this.running.size;
  }

  add(attempt: SandboxedAttempt<S>): void {
    this.running.add(attempt);
    if (this.timer !== undefined) return;
    this.timer = setInterval(() => {
      if (this.running.size === 0) {
        clearInterval(this.timer);
        this.timer = undefined;
        return;
      }
      try {
        this.read();
      } catch (error) {
        this.report.error('could not sample sandboxed jobs', error);
      }
    }, SAMPLE_MS);
    this.timer.unref();
  }

  delete(attempt: SandboxedAttempt<S>): void {
    this.running.delete(attempt);
  }

  /** Current usage of the running sandboxed jobs, summed per series; updates their peaks. */
  read(): Map<S, SandboxTotals> {
    const totals = new Map<S, SandboxTotals>();
    for (const attempt of this.running) {
      const isolate = attempt.isolate;
      if (isolate === undefined) continue;
      let entry = totals.get(attempt.series);
      if (entry === undefined) totals.set(attempt.series, (entry = { cpuMs: 0, memoryBytes: 0, threadMemory: undefined }));
      if (isolate.readCpu !== undefined) void isolate.readCpu(); // refreshes what readNow returns
      const reading = isolate.readNow();
      entry.cpuMs += attempt.isolateCpu(reading) ?? 0;
      if (reading.memoryBytes !== undefined) {
        entry.memoryBytes += reading.memoryBytes;
        if (reading.memoryBytes > attempt.peakBytes) attempt.peakBytes = reading.memoryBytes;
      }
      if (isolate.readMemory !== undefined) {
        (entry.threadMemory ??= []).push(
          isolate.readMemory().then((bytes = 0) => {
            if (bytes > attempt.peakBytes) attempt.peakBytes = bytes;
            return bytes;
          }),
        );
      }
    }
    return totals;
  }
}
