/**
 * The library objects of this process per queue name (queues, workers, clients) whose connections
 * queue state reads go through. Closed objects are dropped when a queue gains an object and, every
 * so often, everywhere: a web app that makes a Queue per request and closes it must not keep every
 * closed Queue alive.
 */
export class QueueHolders<T extends object> {
  private readonly byQueue = new Map<string, Set<T>>();
  private adds = 0;

  constructor(private readonly isOpen: (holder: T) => boolean) {}

  add(queue: string, holder: T): void {
    let holders = this.byQueue.get(queue);
    if (holders === undefined) this.byQueue.set(queue, (holders = new Set()));
    this.sweep(holders);
    holders.add(holder);
    if (++this.adds % 64 === 0) for (const [name, set] of this.byQueue) if (this.sweep(set) === 0) this.byQueue.delete(name);
  }

  /** Forgets `holder` wherever it is (it stopped). */
  delete(holder: T): void {
    for (const [name, set] of this.byQueue) {
      set.delete(holder);
      if (set.size === 0) this.byQueue.delete(name);
    }
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
      if (this.sweep(holders) === 0) {
        this.byQueue.delete(name);
        continue;
      }
      return holders.values().next().value;
    }
    return undefined;
  }

  /** How many holders are kept (for tests of the bound). */
  get size(): number {
    let n = 0;
    for (const set of this.byQueue.values()) n += set.size;
    return n;
  }

  /** Drops the closed holders of a set; returns how many are left. */
  private sweep(holders: Set<T>): number {
    for (const holder of holders) {
      let open = false;
      try {
        open = this.isOpen(holder);
      } catch {
        // an object in a bad state is as good as closed
      }
      if (!open) holders.delete(holder);
    }
    return holders.size;
  }
}
