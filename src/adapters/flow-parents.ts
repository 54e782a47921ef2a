/**
 * When a flow parent became ready to run: when its last child finished. BullMQ stores no such
 * time (the parent only moves from waiting-children to wait), and reading the children's finish
 * times would cost Redis round trips per job, so this process remembers the finish time of each
 * child it ran itself. A parent's time is known only when this process ran **every** one of its
 * children (their number travels in the parent's metadata); otherwise it is unknown and no wait
 * is reported: a child that finished elsewhere, later, would make it too long.
 */

/** Parents remembered at most: the oldest are forgotten first (a parent that never runs here). */
export const MAX_FLOW_PARENTS = 10_000;

interface Children {
  /** Ids of the children seen finishing (a child's retry finishes once more: counted once). */
  readonly seen: Set<string>;
  /** The latest finish time of those, ms since the epoch. */
  last: number;
}

export class FlowParents {
  private readonly parents = new Map<string, Children>();

  constructor(private readonly max = MAX_FLOW_PARENTS) {}

  /** A child of the parent `parentKey` (BullMQ's `job.parentKey`) finished at `at`. */
  childFinished(parentKey: string, childId: string, at: number): void {
    let children = this.parents.get(parentKey);
    if (children === undefined) {
      if (this.parents.size >= this.max) this.parents.delete(this.parents.keys().next().value!);
      children = { seen: new Set(), last: at };
      this.parents.set(parentKey, children);
    }
    children.seen.add(childId);
    children.last = Math.max(children.last, at);
  }

  /**
   * When the parent `parentKey` with `count` children became ready (before its own delay), if this
   * process saw all of them finish; forgets the parent either way (it is starting now).
   */
  readyAt(parentKey: string, count: number): number | undefined {
    const children = this.parents.get(parentKey);
    this.parents.delete(parentKey);
    return children !== undefined && count > 0 && children.seen.size >= count ? children.last : undefined;
  }

  get size(): number {
    return this.parents.size;
  }
}
