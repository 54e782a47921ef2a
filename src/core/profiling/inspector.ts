/**
 * V8's CPU profiler through `node:inspector`, on a session of this thread, or of one worker thread
 * through this thread's session (the `NodeWorker` domain of the protocol: a parent can attach to
 * its worker threads without their help).
 *
 * `node:inspector` is loaded on the first profile only (a Node built without the inspector has
 * none; then profiling reports that once and stays off), and a session is opened per profile and
 * closed when it ends: while no profile is taken, no session exists.
 */
import type { Session } from 'node:inspector';
import type { CpuProfile } from './cpuprofile.js';

type Inspector = typeof import('node:inspector');

let inspector: Inspector | undefined;

function loadInspector(): Inspector {
  inspector ??= process.getBuiltinModule('node:inspector') as Inspector;
  if (inspector === undefined) throw new Error('node:inspector is not available in this Node');
  return inspector;
}

/** Result of a message posted to the session (the protocol's `result`). */
type Result = Record<string, unknown>;

/**
 * Posts a message that a session of this same thread answers before `post` returns (Node
 * dispatches it synchronously); throws the protocol's error, or if the answer did not come.
 */
function postNow(session: Session, method: string, params?: object): Result {
  let answer: { error: Error | null; result: Result } | undefined;
  session.post(method, params ?? {}, (error: Error | null, result?: object) => {
    answer = { error, result: (result ?? {}) as Result };
  });
  if (answer === undefined) throw new Error(`the inspector did not answer ${method} synchronously`);
  if (answer.error !== null) throw answer.error;
  return answer.result;
}

/** `process.hrtime` in microseconds (a Number, exact to the microsecond for ~285 years of uptime). */
function hrtimeUs(): number {
  const ns = process.hrtime.bigint();
  return Number(ns / 1000n) + Number(ns % 1000n) / 1000;
}

/**
 * How to turn `performance.now()` milliseconds into V8 profiler microseconds: `now * 1000 + offset`.
 *
 * V8 stamps samples with its `TimeTicks` clock, and Node's `performance.now()` is libuv's
 * `uv_hrtime()` minus the process's time origin; both read the same monotonic clock (Linux:
 * `CLOCK_MONOTONIC`; macOS: `mach_absolute_time`; Windows: `QueryPerformanceCounter`), and
 * `process.hrtime` is `uv_hrtime()` itself. So the offset is `hrtime - performance.now()`, read
 * back to back (the closest of three pairs: well under a microsecond off). Whether V8 agrees is
 * checked on each profile: its `startTime` must fall within the call that started it.
 */
export function v8ClockOffsetUs(): number {
  let best = Infinity;
  let offset = 0;
  for (let i = 0; i < 3; i++) {
    const before = performance.now();
    const hr = hrtimeUs();
    const after = performance.now();
    if (after - before < best) {
      best = after - before;
      offset = hr - ((before + after) / 2) * 1000;
    }
  }
  return offset;
}

/** A profile being taken on this thread. */
export interface ThreadProfile {
  /** `performance.now()` ms to V8 µs: add this to `now * 1000`. */
  readonly offsetUs: number;
  /** Stops the profiler and closes the session; returns the profile. Throws on a protocol error. */
  stop(): CpuProfile;
  /** Closes the session without a profile (the profiler stops with it). */
  abandon(): void;
}

/**
 * Starts V8's CPU profiler on a new session of this thread, sampling every `intervalUs`. Blocks
 * until V8 has logged the code that exists (milliseconds; see docs/profiling.md).
 */
export function startThisThread(intervalUs: number): ThreadProfile {
  const session = new (loadInspector().Session)();
  session.connect();
  try {
    postNow(session, 'Profiler.enable');
    postNow(session, 'Profiler.setSamplingInterval', { interval: intervalUs });
    let offsetUs = v8ClockOffsetUs();
    const before = performance.now() * 1000 + offsetUs;
    postNow(session, 'Profiler.start');
    const after = performance.now() * 1000 + offsetUs;
    const close = () => {
      try {
        session.disconnect();
      } catch {
        // already closed
      }
    };
    return {
      get offsetUs() {
        return offsetUs;
      },
      stop() {
        try {
          const { profile } = postNow(session, 'Profiler.stop') as { profile: CpuProfile };
          // V8 stamps startTime when the profiler starts: inside [before, after] if the clocks agree
          // (1 ms of slack). Otherwise anchor V8's clock to the start of the call instead.
          if (!(profile.startTime >= before - 1000 && profile.startTime <= after + 1000)) {
            offsetUs += profile.startTime - before;
          }
          return profile;
        } finally {
          close();
        }
      },
      abandon: close,
    };
  } catch (error) {
    session.disconnect();
    throw error;
  }
}

/** A profile being taken on a worker thread. */
export interface WorkerProfile {
  /** Stops the profiler in the thread and detaches; resolves with the profile (at most `timeoutMs`). */
  stop(timeoutMs: number): Promise<CpuProfile>;
  abandon(): void;
}

/**
 * Starts V8's CPU profiler in the worker thread `threadId` of this process, through this thread's
 * session: `NodeWorker.enable` attaches a session to each worker thread (others are detached at
 * once), and the protocol's Profiler messages go to the thread through it. The worker's JavaScript
 * is interrupted to answer, so a busy thread answers too. Rejects after `timeoutMs`.
 */
export async function startWorkerThread(threadId: number, intervalUs: number, timeoutMs: number): Promise<WorkerProfile> {
  const session = new (loadInspector().Session)();
  session.connect();
  let sessionId: string | undefined;
  let nextId = 0;
  const pending = new Map<number, (message: { result?: Result; error?: { message?: string } }) => void>();
  const close = () => {
    for (const answer of pending.values()) answer({ error: { message: 'session closed' } });
    pending.clear();
    try {
      session.disconnect(); // detaches from the worker too
    } catch {
      // already closed
    }
  };
  const send = (method: string, params: object, ms: number): Promise<Result> =>
    new Promise((resolve, reject) => {
      const id = ++nextId;
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(new Error(`worker thread ${threadId} did not answer ${method} within ${ms} ms`));
      }, ms);
      timer.unref();
      pending.set(id, (message) => {
        clearTimeout(timer);
        if (message.error !== undefined) reject(new Error(`${method}: ${message.error.message ?? 'failed'}`));
        else resolve(message.result ?? {});
      });
      session.post('NodeWorker.sendMessageToWorker', { sessionId, message: JSON.stringify({ id, method, params }) }, (error) => {
        if (error === null) return;
        pending.delete(id);
        clearTimeout(timer);
        reject(error);
      });
    });
  session.on('NodeWorker.receivedMessageFromWorker', ({ params }) => {
    if (params.sessionId !== sessionId) return;
    try {
      const message = JSON.parse(params.message) as { id?: number; result?: Result; error?: { message?: string } };
      if (typeof message.id !== 'number') return; // an event
      const answer = pending.get(message.id);
      pending.delete(message.id);
      answer?.(message);
    } catch {
      // not JSON: not ours
    }
  });
  session.on('NodeWorker.attachedToWorker', ({ params }) => {
    if (sessionId === undefined && params.workerInfo.workerId === String(threadId)) {
      sessionId = params.sessionId;
      return;
    }
    session.post('NodeWorker.detach', { sessionId: params.sessionId }, () => {});
  });
  try {
    // Attaching to the worker threads that exist happens while this is answered.
    postNow(session, 'NodeWorker.enable', { waitForDebuggerOnStart: false });
    if (sessionId === undefined) throw new Error(`no worker thread ${threadId} to attach to`);
    await send('Profiler.enable', {}, timeoutMs);
    await send('Profiler.setSamplingInterval', { interval: intervalUs }, timeoutMs);
    await send('Profiler.start', {}, timeoutMs);
  } catch (error) {
    close();
    throw error;
  }
  return {
    async stop(ms) {
      try {
        const { profile } = (await send('Profiler.stop', {}, ms)) as { profile: CpuProfile };
        return profile;
      } finally {
        close();
      }
    },
    abandon: close,
  };
}
