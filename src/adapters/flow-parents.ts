/**
 * When a flow parent became ready to run: when its last child finished. BullMQ stores no such
 * time (the parent only moves from waiting-children to wait), and reading the children's finish
 * times would cost Redis round trips per job, so this process remembers when each child it ran
 * itself finished. A parent's time is known only when this process ran **every** one of its
 * children (their number travels in the parent's metadata); otherwise it is unknown and no wait
 * is reported: a child that finished elsewhere, later, would make it too long.
 */

/**
 * Parents remembered at most, the oldest forgotten first: a worker that runs children whose
 * parents run elsewhere fills this up, so it is kept small (an entry is a key and two numbers).
 */
export const MAX_FLOW_PARENTS = 2_000;

interface Children {
  /** Children seen finishing (a child completes, or fails for good, once). */
  finished: number;
  /** The latest finish time of those, ms since the epoch. */
  last: number;
}

export class FlowParents {
  private readonly parents = new Map<string, Children>();

  constructor(private readonly max = MAX_FLOW_PARENTS) {}

  /** A child of the parent `parentKey` (BullMQ's `job.parentKey`) finished at `at`. */
  childFinished(parentKey: string, at: number): void {
    const children = this.parents.get(parentKey);
    if (children !== undefined) {
      children.finished++;
      children.last = Math.max(children.last, at);
      return;
    }
    if (this.parents.size >= this.max) this.parents.delete(this.parents.keys().next().value!);
    this.parents.set(parentKey, { finished: 1, last: at });
  }

  /**
   * When the parent `parentKey` with `count` children became ready (before its own delay), if this
   * process saw all of them finish; forgets the parent either way (it is starting now).
   */
  readyAt(parentKey: string, count: number): number | undefined {
    const children = this.parents.get(parentKey);
    this.parents.delete(parentKey);
    return children !== undefined && count > 0 && children.finished >= count ? children.last : undefined;
  }

  get size(): number {
    return this.parents.size;
  }
}
