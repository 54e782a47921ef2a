/**
 * The library objects of this process per queue name (queues, clients) whose connections queue
 * state reads go through. A closed object is dropped when it is next looked at, so a read finds
 * an open one or none (and then the queue is forgotten until it is used again).
 */
export class QueueHolders<T extends object> {
  private readonly byQueue = new Map<string, Set<T>>();

  constructor(private readonly isOpen: (holder: T) => boolean) {}

  add(queue: string, holder: T): void {
    let holders = this.byQueue.get(queue);
    if (holders === undefined) this.byQueue.set(queue, (holders = new Set()));
    holders.add(holder);
  }

  /** One open holder of each queue (closed ones are dropped). */
  allOpen(): T[] {
    const out: T[] = [];
    for (const queue of [...this.byQueue.keys()]) {
      const holder = this.open(queue);
      if (holder !== undefined) out.push(holder);
    }
    return out;
  }

  /** An open holder of `queue`, or with `anyQueue` of any queue (for queues listed in the options). */
  open(queue: string, anyQueue = false): T | undefined {
    const names = anyQueue ? [queue, ...this.byQueue.keys()] : [queue];
    for (const name of names) {
      const holders = this.byQueue.get(name);
      if (holders === undefined) continue;
      for (const holder of holders) {
        if (this.isOpen(holder)) return holder;
        holders.delete(holder);
      }
      if (holders.size === 0) this.byQueue.delete(name);
    }
    return undefined;
  }
}
