/**
 * Attribution of event-loop time and heap growth to the jobs that share one event loop.
 *
 * A job's own code runs in slices: its synchronous start, then every continuation of its async
 * context (a resolved await, a timer, an I/O callback). A slice belongs to the job whose attempt
 * is running, kept in an AsyncLocalStorage, so the only other machinery is a hook around every
 * callback of the event loop (`loop-hooks.ts`, the only user of Node's async and promise hooks,
 * kept apart so that it can be replaced, for example by an AsyncContext based tracker, without
 * touching the rest). Users turn it off with the `jobCpu: false, jobMemory: false` options.
 *
 * What a slice measures, and is named for: wall time on the event loop while the job's code runs
 * (which includes GC pauses and time blocked in synchronous I/O), and the change of V8's used heap
 * plus external memory (Buffers, ArrayBuffers) between the slice's start and end.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { getHeapStatistics } from 'node:v8';
import { LoopHooks } from './loop-hooks.js';

/** Whatever receives slices: a running job attempt on this event loop. */
export interface LoopTenant {
  /** False once the attempt ended, or when its code runs elsewhere (a sandboxed processor). */
  readonly attributable: boolean;
  /** Heap bytes it allocated since the last drop of the heap was seen. */
  recentBytes: number;
  addLoopTime(ms: number): void;
  /** Changes the bytes it holds (never below zero). */
  addHeap(delta: number): void;
}

/**
 * The attempt whose code is running. A store of its own rather than a key in the OpenTelemetry
 * context: the hook reads it on every async callback of the process, and `getStore()` is one call
 * where reading the OpenTelemetry context goes through the global API registry and a context
 * lookup (measured in `npm run bench`, see README).
 */
const tenants = new AsyncLocalStorage<LoopTenant>();

/** Runs `fn` with its async continuations attributed to `tenant`. */
export function runWithTenant<T>(tenant: LoopTenant, fn: () => T): T {
  return tenants.run(tenant, fn);
}

/** The tenant of the running code, if any. */
export function activeTenant(): LoopTenant | undefined {
  return tenants.getStore();
}

let measureHeap = false;

/** V8's used heap plus memory held outside it by Buffers and ArrayBuffers (external memory). */
function heapBytes(): number {
  const stats = getHeapStatistics();
  return stats.used_heap_size + stats.external_memory;
}

let current: LoopTenant | undefined;
let sliceStart = 0;
let heapStart = 0;
/** The heap when the last slice closed: a drop seen when the next one opens is a collection. */
let lastHeap = -1;
/** Tenants that allocated since the last collection was seen, among which freed bytes are shared. */
const allocators = new Set<LoopTenant>();

function open(tenant: LoopTenant): void {
  current = tenant;
  if (measureHeap) {
    heapStart = heapBytes();
    if (lastHeap >= 0 && heapStart < lastHeap) freed(lastHeap - heapStart);
  }
  sliceStart = performance.now();
}

/** Receives every slice of one tenant as it closes (start and end, `performance.now()` ms). */
export interface SliceWatch {
  readonly tenant: LoopTenant;
  slice(start: number, end: number): void;
}

/**
 * The one tenant whose slices are being recorded (a profiled attempt, `profiling/`), if any.
 * Unset unless a profile is being taken: then closing a slice costs one check more.
 */
let watch: SliceWatch | undefined;

/** Records the slices of `w.tenant` from now on, instead of any other's; undefined stops. */
export function watchSlices(w: SliceWatch | undefined): void {
  watch = w;
}

function close(): void {
  const tenant = current as LoopTenant;
  current = undefined;
  const end = performance.now();
  tenant.addLoopTime(end - sliceStart);
  if (watch !== undefined && watch.tenant === tenant) watch.slice(sliceStart, end);
  if (!measureHeap) return;
  const heap = heapBytes();
  lastHeap = heap;
  const delta = heap - heapStart;
  if (delta >= 0) {
    tenant.addHeap(delta);
    tenant.recentBytes += delta;
    allocators.add(tenant);
  } else {
    freed(-delta);
  }
}

/**
 * V8 freed `bytes` (a drop of the heap inside a slice or between two). What it freed was garbage,
 * and garbage is made by allocating: the bytes are taken from the jobs that allocated since the
 * last drop, in proportion to what each allocated, not from the job whose slice the collector
 * happened to run in (the job that allocates most triggers most collections, whatever it keeps),
 * and not left with a job whose garbage was freed while other code ran (V8 sweeps concurrently).
 */
function freed(bytes: number): void {
  let total = 0;
  for (const tenant of allocators) total += tenant.recentBytes;
  if (total <= 0) return;
  const share = Math.min(1, bytes / total);
  for (const tenant of allocators) {
    if (tenant.attributable) tenant.addHeap(-tenant.recentBytes * share);
    tenant.recentBytes = 0;
  }
  allocators.clear();
}

/** Forgets an attempt that ended. */
export function releaseTenant(tenant: LoopTenant): void {
  allocators.delete(tenant);
  if (current === tenant) current = undefined;
}

const hooks = new LoopHooks(
  () => {
    // Continuations of other code (the queue library, other requests) cost one context lookup.
    const tenant = activeTenant();
    if (tenant === current) return;
    if (current !== undefined) close();
    if (tenant !== undefined && tenant.attributable) open(tenant);
  },
  () => {
    if (current !== undefined) close();
  },
);

/** Resolves once the hooks run the cheapest way this Node allows (for tests). */
export function loopHooksSettled(): Promise<boolean> {
  return hooks.settled().then(() => hooks.usesPromiseHooks);
}

let users = 0;
const heapUsers = { count: 0 };

/**
 * Turns attribution on for one user (an instrumentation); returns the function that turns it off
 * again. The hook runs while at least one user needs it.
 */
export function acquireLoopAttribution(heap: boolean): () => void {
  if (users++ === 0) hooks.enable();
  if (heap && heapUsers.count++ === 0) measureHeap = true;
  let released = false;
  return () => {
    if (released) return;
    released = true;
    if (heap && --heapUsers.count === 0) measureHeap = false;
    if (--users === 0) {
      hooks.disable();
      current = undefined;
      lastHeap = -1;
      allocators.clear();
    }
  };
}

/**
 * Runs `fn`, the synchronous start of a job, as one of the tenant's slices: no async hook
 * surrounds the code before a job's first await, so it is timed here. A slice of another job that
 * was open around it is closed first and reopened after.
 */
export function runAsSlice<T>(tenant: LoopTenant, fn: () => T): T {
  const outer = current;
  if (outer !== undefined) close();
  open(tenant);
  try {
    return fn();
  } finally {
    if (current !== undefined) close();
    if (outer !== undefined && outer.attributable) open(outer);
  }
}
