/**
 * CPU profiles of chosen job attempts (option `profileJobs`), safe to leave on in production:
 *
 * - Which: attempts whose job name (as the metrics report it; the queue name for a library without
 *   job names) is listed, each name at most once per `profileInterval` (default a minute), and one
 *   attempt at a time in the whole process. The profiler's cost is then bounded in time, whatever
 *   the throughput: at most one profiler start (a few milliseconds of blocked loop while V8 logs the
 *   code that exists) per name per interval, and sampling while one attempt runs, at most
 *   {@link MAX_PROFILE_MS}. A one-in-N rate would profile a 1,000-jobs-a-second queue without
 *   pause.
 * - What: a job sharing the event loop is profiled on this thread, and only the samples taken
 *   inside its own slices are kept (`cpuprofile.ts`), the slices being recorded by the loop
 *   attribution as they close (`watchSlices`, at most {@link MAX_SLICES}). A job in a worker thread
 *   (a sandboxed BullMQ processor with `useWorkerThreads`) is profiled in that thread, all of it
 *   (the thread runs that job alone). A job in a child process is not profiled: the parent has no
 *   way into its V8 (docs/profiling.md).
 * - Where: a `.cpuprofile` file in `profileDirectory` (`files.ts`).
 */
import type { Reporter } from '../report.js';
import { type LoopTenant, watchSlices } from '../resources/loop-attribution.js';
import type { IsolateHandle } from '../seam.js';
import { keepSlices } from './cpuprofile.js';
import { profilePath, writeProfile } from './files.js';
import { type ThreadProfile, type WorkerProfile, startThisThread, startWorkerThread } from './inspector.js';

/**
 * V8's sampling interval while a job is profiled: V8's and `node --cpu-prof`'s default. At 250 µs
 * V8's profiler thread took about 1.7 times the CPU it takes at 1000 µs (docs/profiling.md).
 */
export const SAMPLING_INTERVAL_US = 1000;
/** A profile still running after this long is stopped and written with what it has. */
export const MAX_PROFILE_MS = 30_000;
/** Slices recorded per profile at most (16 bytes each); later slices are left out of the profile. */
export const MAX_SLICES = 200_000;
/** How long a worker thread may take to answer the profiler's messages. */
const WORKER_TIMEOUT_MS = 2000;

/** What a profile is labelled with (capped names, as on the metrics). */
export interface ProfileLabels {
  system: string;
  queue: string;
  jobName: string | undefined;
}

/** The options profiling reads. */
export interface ProfileOptions {
  readonly profileJobs: readonly string[];
  readonly profileInterval: number;
  readonly profileDirectory: string;
}

/** A profile of one attempt, started before its processor runs. */
export interface AttemptProfile {
  /** The sandbox the attempt's job was handed to (sandboxed processors only). */
  sandbox(handle: IsolateHandle): void;
  /** The attempt ended: stops the profile; returns the file it is written to, if it will be. */
  end(): string | undefined;
}

// One profile at a time in the process, whichever copy of queue-otel (CommonJS, ESM) takes it.
const SLOT = Symbol.for('queue-otel.profiling.busy');
const slots = globalThis as Record<symbol, boolean | undefined>;

function takeSlot(): boolean {
  if (slots[SLOT] === true) return false;
  slots[SLOT] = true;
  return true;
}

function releaseSlot(): void {
  slots[SLOT] = false;
}

/** Chooses the attempts to profile, by the options of one instrumentation. */
export class JobProfiler {
  private readonly names: ReadonlySet<string>;
  /** `performance.now()` of the last profile start of each listed name. */
  private readonly lastStart = new Map<string, number>();

  constructor(
    private readonly options: ProfileOptions,
    private readonly report: Reporter,
  ) {
    this.names = new Set(options.profileJobs);
  }

  /**
   * An attempt is about to run its processor (`sandboxed`: in another process or thread): returns
   * its profile, started, if it is one to profile now; undefined otherwise, or if anything failed.
   */
  begin(tenant: LoopTenant, labels: ProfileLabels, sandboxed: boolean): AttemptProfile | undefined {
    const name = labels.jobName ?? labels.queue;
    if (!this.names.has(name)) return undefined;
    const now = performance.now();
    const last = this.lastStart.get(name);
    if (last !== undefined && now - last < this.options.profileInterval) return undefined;
    if (!takeSlot()) return undefined;
    // A failed start counts too: a broken inspector is retried once per interval, not per job.
    this.lastStart.set(name, now);
    try {
      return sandboxed
        ? new SandboxProfile(labels, this.options.profileDirectory, this.report)
        : new LoopProfile(tenant, labels, this.options.profileDirectory, this.report);
    } catch (error) {
      releaseSlot();
      this.report.error('could not start a job profile', error);
      return undefined;
    }
  }
}

/** A job on this event loop: this thread's profile, cut to the job's slices. */
class LoopProfile implements AttemptProfile {
  private readonly session: ThreadProfile;
  private readonly starts: number[] = [];
  private readonly ends: number[] = [];
  private readonly timer: NodeJS.Timeout;
  private stopped = false;
  private path: string | undefined;

  constructor(
    tenant: LoopTenant,
    private readonly labels: ProfileLabels,
    private readonly directory: string,
    private readonly report: Reporter,
  ) {
    this.session = startThisThread(SAMPLING_INTERVAL_US);
    const { starts, ends } = this;
    watchSlices({
      tenant,
      slice(start, end) {
        if (starts.length < MAX_SLICES) {
          starts.push(start);
          ends.push(end);
        }
      },
    });
    this.timer = setTimeout(() => this.stop(), MAX_PROFILE_MS);
    this.timer.unref();
  }

  sandbox(): void {}

  end(): string | undefined {
    this.stop();
    return this.path;
  }

  private stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.timer);
    watchSlices(undefined);
    try {
      const profile = this.session.stop();
      const offset = this.session.offsetUs;
      const kept = keepSlices(profile, {
        count: this.starts.length,
        starts: this.starts.map((ms) => ms * 1000 + offset),
        ends: this.ends.map((ms) => ms * 1000 + offset),
      });
      // No sample fell in the job's slices (it ran less than a sampling interval): no file.
      if (kept === undefined) return;
      const path = profilePath(this.directory, this.labels.queue, this.labels.jobName);
      this.path = path;
      writeProfile(path, JSON.stringify(kept), this.labels).catch((error: unknown) => {
        this.report.error('could not write a job profile', error);
      });
    } catch (error) {
      this.report.error('could not take a job profile', error);
    } finally {
      releaseSlot();
    }
  }
}

/** A sandboxed job: profiled in its worker thread; a child process cannot be (see the top). */
class SandboxProfile implements AttemptProfile {
  private started: Promise<WorkerProfile | undefined> | undefined;
  private readonly timer: NodeJS.Timeout;
  private stopped = false;
  private path: string | undefined;

  constructor(
    private readonly labels: ProfileLabels,
    private readonly directory: string,
    private readonly report: Reporter,
  ) {
    this.timer = setTimeout(() => this.stop(), MAX_PROFILE_MS);
    this.timer.unref();
  }

  sandbox(handle: IsolateHandle): void {
    if (this.stopped || this.started !== undefined) return;
    const threadId = handle.kind === 'thread' ? handle.thread.threadId : undefined;
    if (typeof threadId !== 'number') {
      this.report.warnOnce(
        'profile-child-process',
        `profileJobs: "${this.labels.jobName ?? this.labels.queue}" runs in a child process, which cannot be profiled from this one; ` +
          'jobs in worker threads (useWorkerThreads) and on this event loop can (see docs/profiling.md)',
      );
      this.stop();
      return;
    }
    const path = profilePath(this.directory, this.labels.queue, this.labels.jobName);
    this.path = path;
    this.started = startWorkerThread(threadId, SAMPLING_INTERVAL_US, WORKER_TIMEOUT_MS).catch((error: unknown) => {
      if (this.path === path) this.path = undefined;
      this.report.error('could not start the profile of a job in a worker thread', error);
      return undefined;
    });
  }

  end(): string | undefined {
    this.stop();
    return this.path;
  }

  private stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.timer);
    const started = this.started;
    const path = this.path;
    if (started === undefined || path === undefined) {
      releaseSlot();
      return;
    }
    void started
      .then(async (profile) => {
        if (profile === undefined) return;
        const body = JSON.stringify(await profile.stop(WORKER_TIMEOUT_MS));
        await writeProfile(path, body, this.labels);
      })
      .catch((error: unknown) => this.report.error('could not take the profile of a job in a worker thread', error))
      .finally(releaseSlot);
  }
}
