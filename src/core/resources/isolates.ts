/**
 * Exact usage of a job that runs in a process or thread of its own (a sandboxed processor), read
 * from the parent. A sandbox is reused from job to job, so CPU is counted from a baseline taken
 * when the job is handed to it.
 *
 * - Child process: CPU time (user + system) and resident set size from /proc/<pid>/stat and
 *   /proc/<pid>/statm, read synchronously (tens of microseconds). Linux only: elsewhere a child's
 *   usage is not reported (the job's own figures stay empty rather than wrong).
 * - Worker thread: its CPU time (`worker.cpuUsage()`, asynchronous; where a Node lacks it, the
 *   time its event loop was active, `worker.performance.eventLoopUtilization()`, which is wall
 *   time), and its V8 used heap (`worker.getHeapStatistics()`, asynchronous) as its memory.
 */
import { readFileSync } from 'node:fs';
import type { IsolateHandle } from '../seam.js';

/** One reading of an isolate. `cpuMs` is cumulative since the isolate started. */
export interface IsolateReading {
  cpuMs: number | undefined;
  memoryBytes: number | undefined;
}

/** Reads one process or thread. */
export interface Isolate {
  /** Synchronous part: CPU always, memory when it can be read synchronously. */
  readNow(): IsolateReading;
  /** Memory that can only be read asynchronously (a worker thread's heap), if any. */
  readMemory?(): Promise<number | undefined>;
  /**
   * CPU that can only be read asynchronously (a worker thread's), if any. `readNow()` then
   * returns the last value this read obtained.
   */
  readCpu?(): Promise<number | undefined>;
}

// Linux reports CPU in clock ticks of USER_HZ, 100 on every mainstream kernel build.
const TICKS_PER_S = 100;
let pageSize: number | undefined;

/** Page size from our own RSS and resident pages, rounded to a power of two (no sysconf in Node). */
function pageBytes(): number {
  if (pageSize === undefined) {
    try {
      const pages = Number(readFileSync('/proc/self/statm', 'utf8').split(' ')[1]);
      const estimate = process.memoryUsage.rss() / pages;
      pageSize = 2 ** Math.round(Math.log2(estimate));
    } catch {
      pageSize = 4096;
    }
  }
  return pageSize;
}

function readProcess(pid: number): IsolateReading {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]);
    const resident = Number(readFileSync(`/proc/${pid}/statm`, 'utf8').split(' ')[1]);
    return { cpuMs: (ticks * 1000) / TICKS_PER_S, memoryBytes: resident * pageBytes() };
  } catch {
    return { cpuMs: undefined, memoryBytes: undefined };
  }
}

export function toIsolate(handle: IsolateHandle): Isolate | undefined {
  if (handle.kind === 'process') {
    if (process.platform !== 'linux') return undefined;
    return { readNow: () => readProcess(handle.pid) };
  }
  const thread = handle.thread;
  const readMemory = async () => {
    try {
      return (await thread.getHeapStatistics?.())?.used_heap_size;
    } catch {
      return undefined; // the thread exited
    }
  };
  if (typeof thread.cpuUsage === 'function') {
    let lastCpuMs: number | undefined;
    const readCpu = async () => {
      try {
        const usage = await (thread.cpuUsage as () => Promise<{ user: number; system: number }>)();
        lastCpuMs = (usage.user + usage.system) / 1000;
      } catch {
        // the thread exited: keep the last value
      }
      return lastCpuMs;
    };
    return { readNow: () => ({ cpuMs: lastCpuMs, memoryBytes: undefined }), readCpu, readMemory };
  }
  return {
    readNow: () => {
      try {
        return { cpuMs: thread.performance?.eventLoopUtilization().active, memoryBytes: undefined };
      } catch {
        return { cpuMs: undefined, memoryBytes: undefined };
      }
    },
    readMemory,
  };
}
