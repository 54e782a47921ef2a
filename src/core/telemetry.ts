import type { BatchObservableResult, DiagLogger, Meter, Tracer } from '@opentelemetry/api';
import type { ResolvedConfig } from '../config.js';
import { type Attempt, AttemptRecorder } from './attempts.js';
import { Instruments, type LiveInstruments } from './instruments.js';
import { QueueStats, type QueueStateSource } from './queue-stats.js';
import { acquireLoopAttribution } from './resources/loop-attribution.js';
import { SendRecorder } from './sends.js';
import type { JobSeries } from './series.js';
import { type ConcurrencySource, Tracker } from './tracker.js';

/**
 * The queue-agnostic core of one instrumentation: it owns every span and metric. Adapters hand
 * it plain facts about jobs (queue, name, id, attempt, ready time) and never touch OpenTelemetry.
 */
export class QueueTelemetry {
  readonly tracker: Tracker;
  readonly attempts: AttemptRecorder;
  readonly sends: SendRecorder;
  readonly stats: QueueStats;
  /** Running attempts whose job runs in a sandboxed process or thread: read at collection. */
  readonly isolated = new Set<Attempt>();
  private sampler: NodeJS.Timeout | undefined;
  private instruments: Instruments | undefined;
  private tracerRef: Tracer | undefined;
  private releaseLoop: (() => void) | undefined;
  private enabled = false;

  constructor(
    readonly system: string,
    private currentConfig: ResolvedConfig,
    readonly diag: DiagLogger,
  ) {
    this.tracker = new Tracker(system, () => this.currentConfig.maxJobNamesPerQueue);
    this.attempts = new AttemptRecorder(this);
    this.sends = new SendRecorder(this);
    this.stats = new QueueStats(
      () => ({
        intervalMs: this.currentConfig.queueStateInterval,
        timeoutMs: this.currentConfig.queueStateTimeout,
        leader: this.currentConfig.queueStateLeader,
      }),
      diag,
    );
  }

  /** Reads this queue's state (depth, oldest ages) from now on, if that is on and not done yet. */
  watchQueue(queue: string, source: () => QueueStateSource | undefined): void {
    if (!this.currentConfig.queueState || this.stats.has(queue)) return;
    try {
      const s = source();
      if (s !== undefined) this.stats.register(queue, this.tracker.queue(queue).attributes, s);
    } catch (error) {
      this.diag.error(`could not watch the state of queue "${queue}"`, error);
    }
  }

  get config(): ResolvedConfig {
    return this.currentConfig;
  }

  /** Whether per-job CPU or memory is measured. */
  get resourcesOn(): boolean {
    return this.releaseLoop !== undefined;
  }

  /**
   * New options apply to the next job; a new name cap, to queues first seen after it.
   * `enabled`: whether the instrumentation is on, so attribution follows the new options.
   */
  setConfig(config: ResolvedConfig, enabled: boolean): void {
    this.currentConfig = config;
    if (enabled) this.start();
  }

  /** Starts what runs while the instrumentation is enabled: the event-loop attribution hook. */
  start(): void {
    this.enabled = true;
    this.stop();
    const { jobCpu, jobMemory } = this.currentConfig;
    if (!jobCpu && !jobMemory) return;
    try {
      this.releaseLoop = acquireLoopAttribution(jobMemory);
    } catch (error) {
      this.diag.error('could not start per-job resource attribution', error);
    }
  }

  stop(): void {
    this.releaseLoop?.();
    this.releaseLoop = undefined;
  }

  /** The instrumentation is disabled: nothing of it keeps running, and queue state is not read. */
  disable(): void {
    this.enabled = false;
    this.stop();
    this.stats.stop();
  }

  get tracer(): Tracer | undefined {
    return this.tracerRef;
  }

  /** Current instruments, or undefined while no usable meter is set. */
  get metrics(): Instruments | undefined {
    return this.instruments;
  }

  setTracer(tracer: Tracer): void {
    this.tracerRef = tracer;
  }

  /** (Re)creates the instruments on a new meter; a meter that throws leaves metrics off. */
  setMeter(meter: Meter): void {
    try {
      this.instruments?.dispose();
    } catch (error) {
      this.diag.warn('could not remove the previous metric callback', error);
    }
    this.instruments = undefined;
    try {
      this.instruments = new Instruments(meter, (result, live) => this.observe(result, live));
    } catch (error) {
      this.diag.error('could not create metric instruments; metrics are off', error);
    }
  }

  /**
   * Tracks a sandboxed attempt. While any runs, a timer samples their memory every 250 ms so the
   * peak of a job that releases its memory before it ends is still seen.
   */
  addIsolated(attempt: Attempt): void {
    this.isolated.add(attempt);
    if (this.sampler !== undefined) return;
    this.sampler = setInterval(() => {
      if (this.isolated.size === 0) {
        clearInterval(this.sampler);
        this.sampler = undefined;
        return;
      }
      try {
        this.readIsolates();
      } catch (error) {
        this.diag.error('could not sample sandboxed jobs', error);
      }
    }, 250);
    this.sampler.unref();
  }

  /** Registers one worker's concurrency limit; returns its unregister function. */
  addWorker(queue: string, read: ConcurrencySource): () => void {
    return this.tracker.addWorker(queue, read);
  }

  /** Counts jobs the queue library found stalled. */
  stalled(queue: string, count = 1): void {
    try {
      this.instruments?.stalled.add(count, this.tracker.queue(queue).attributes);
    } catch (error) {
      this.diag.error('could not record stalled jobs', error);
    }
  }

  /**
   * The batch callback: O(queues + series + running sandboxed jobs), whatever the number of
   * running jobs on this loop (their totals are kept per series as they run).
   */
  private observe(result: BatchObservableResult, live: LiveInstruments): void | Promise<void> {
    try {
      const now = performance.now();
      const { jobCpu, jobMemory } = this.currentConfig;
      const resources = this.resourcesOn;
      const sandboxed = resources && this.isolated.size > 0 ? this.readIsolates() : undefined;
      const observeSeries = (series: JobSeries, memoryExtra: number) => {
        const extra = sandboxed?.get(series);
        if (jobCpu) result.observe(live.cpuTime, series.cpuSeconds(extra?.cpuMs ?? 0), series.attributes);
        if (jobMemory) result.observe(live.memoryUsage, series.heldBytes + (extra?.memoryBytes ?? 0) + memoryExtra, series.attributes);
      };
      const pendingMemory: Array<Promise<void>> = [];
      if (this.currentConfig.queueState && this.enabled) {
        for (const state of this.stats.collect()) {
          for (const count of state.counts) result.observe(live.jobsCount, count.value, count.attributes);
          if (state.oldestAgeS !== undefined) result.observe(live.oldestAge, state.oldestAgeS, state.attributes);
          if (state.failedOldestAgeS !== undefined) result.observe(live.failedOldestAge, state.failedOldestAgeS, state.attributes);
        }
      }
      for (const queue of this.tracker.allQueues()) {
        result.observe(live.concurrency, queue.concurrency(), queue.attributes);
        for (const series of queue.series.values()) {
          if (!series.consumed) continue;
          result.observe(live.busyTime, series.busySeconds(now), series.attributes);
          result.observe(live.active, series.running, series.attributes);
          result.observe(live.runningOldest, series.oldestRunningSeconds(now), series.attributes);
          for (const [attributes, count] of series.endedAttempts) result.observe(live.consumedMessages, count, attributes);
          if (!resources) continue;
          const threads = sandboxed?.get(series)?.threadMemory;
          if (threads === undefined || !jobMemory) observeSeries(series, 0);
          else pendingMemory.push(Promise.all(threads).then((bytes) => observeSeries(series, sum(bytes))));
        }
      }
      if (pendingMemory.length > 0) {
        return Promise.all(pendingMemory).then(
          () => undefined,
          (error: unknown) => this.diag.error('metric collection failed', error),
        );
      }
    } catch (error) {
      this.diag.error('metric collection failed', error);
    }
  }

  /** Current usage of running sandboxed jobs, summed per series; updates their peaks. */
  private readIsolates(): Map<JobSeries, IsolateTotals> {
    const totals = new Map<JobSeries, IsolateTotals>();
    for (const attempt of this.isolated) {
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

interface IsolateTotals {
  cpuMs: number;
  memoryBytes: number;
  threadMemory: Array<Promise<number>> | undefined;
}

function sum(values: number[]): number {
  return values.reduce((a, b) => a + b, 0);
}

