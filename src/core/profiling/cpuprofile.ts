/**
 * The `.cpuprofile` format (the inspector protocol's `Profiler.Profile`, which Chrome DevTools and
 * speedscope open), and the cut that keeps only the samples of one job's event-loop slices.
 */

/** A function's location, as V8 reports it. */
export interface CallFrame {
  functionName: string;
  scriptId: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}

/** One node of the call tree: a function called from its parent's function. */
export interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  /** Samples whose innermost frame is this node. */
  hitCount?: number;
  children?: number[];
  deoptReason?: string;
  /** Samples by source line; dropped by {@link keepSlices} (they would count the cut samples). */
  positionTicks?: Array<{ line: number; ticks: number }>;
}

/**
 * A V8 CPU profile. Times are microseconds on V8's monotonic clock: sample `i` was taken at
 * `startTime + timeDeltas[0] + ... + timeDeltas[i]`, and its stack is the path from the root to
 * node `samples[i]`.
 */
export interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

/**
 * Intervals of V8 time (microseconds), in increasing order and not overlapping: the slices of a
 * job's code on the event loop, as {@link keepSlices} takes them.
 */
export interface Slices {
  readonly count: number;
  readonly starts: ArrayLike<number>;
  readonly ends: ArrayLike<number>;
}

/**
 * The profile of the samples taken inside `slices`, and nothing else; undefined when no sample
 * fell in one.
 *
 * The slices are laid end to end: the result starts where the first slice starts and lasts as long
 * as the slices together, so its total is the job's own time on the event loop (what
 * `queue.job.cpu.time` measures) and not the wall time between its first and last slice. A kept
 * sample keeps the time since the sample before it, cut at the start of its slice (time before the
 * slice belonged to other code). The call tree keeps the nodes a kept sample, or a descendant of
 * one, points to, with `hitCount` recounted; node ids are unchanged.
 */
export function keepSlices(profile: CpuProfile, slices: Slices): CpuProfile | undefined {
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  const n = Math.min(samples.length, deltas.length);
  const keptSamples: number[] = [];
  const keptDeltas: number[] = [];
  let t = profile.startTime;
  let previous = profile.startTime;
  let j = 0;
  for (let i = 0; i < n; i++) {
    t += deltas[i] as number;
    while (j < slices.count && (slices.ends[j] as number) < t) j++;
    if (j < slices.count && (slices.starts[j] as number) <= t) {
      keptSamples.push(samples[i] as number);
      keptDeltas.push(Math.max(0, t - Math.max(previous, slices.starts[j] as number)));
    }
    previous = t;
  }
  if (keptSamples.length === 0) return undefined;

  // The slices' total within the profile's window: the laid-end-to-end duration.
  let total = 0;
  let first: number | undefined;
  for (let k = 0; k < slices.count; k++) {
    const start = Math.max(slices.starts[k] as number, profile.startTime);
    const end = Math.min(slices.ends[k] as number, profile.endTime);
    if (end <= start) continue;
    first ??= start;
    total += end - start;
  }
  const startTime = first ?? profile.startTime;
  const kept = keptDeltas.reduce((sum, d) => sum + d, 0);

  return {
    nodes: pruneTree(profile.nodes, keptSamples),
    startTime,
    endTime: startTime + Math.max(total, kept),
    samples: keptSamples,
    timeDeltas: keptDeltas,
  };
}

/** The nodes on the path from the root to any of `samples`, with hit counts of `samples` only. */
function pruneTree(nodes: readonly ProfileNode[], samples: readonly number[]): ProfileNode[] {
  const parent = new Map<number, number>();
  for (const node of nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  const hits = new Map<number, number>();
  for (const id of samples) hits.set(id, (hits.get(id) ?? 0) + 1);
  const keep = new Set<number>();
  for (const id of hits.keys()) {
    for (let at: number | undefined = id; at !== undefined && !keep.has(at); at = parent.get(at)) keep.add(at);
  }
  // The root (the node no other node has as a child) stays, even for samples of unknown nodes.
  for (const node of nodes) if (!parent.has(node.id)) keep.add(node.id);
  const out: ProfileNode[] = [];
  for (const node of nodes) {
    if (!keep.has(node.id)) continue;
    const copy: ProfileNode = { id: node.id, callFrame: node.callFrame, hitCount: hits.get(node.id) ?? 0 };
    const children = (node.children ?? []).filter((c) => keep.has(c));
    if (children.length > 0) copy.children = children;
    if (node.deoptReason !== undefined) copy.deoptReason = node.deoptReason;
    out.push(copy);
  }
  return out;
}
