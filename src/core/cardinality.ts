import { OTHER } from '../semconv.js';

/**
 * A map that admits at most `max` keys; lookups of further keys all share one `_OTHER` entry.
 * It is how job names are capped per queue: a bug that makes a new name per job must not create a
 * new metric series per job. Entries are never evicted, so a name keeps its series for the life of
 * the process (an evicting cache would let a flood of names push out real ones).
 */
export class CappedRegistry<V> {
  private readonly entries = new Map<string, V>();
  private other: V | undefined;

  constructor(
    private readonly max: number,
    private readonly create: (key: string) => V,
  ) {}

  get(key: string): V {
    const found = this.entries.get(key);
    if (found !== undefined) return found;
    if (this.entries.size < this.max) {
      const created = this.create(key);
      this.entries.set(key, created);
      return created;
    }
    return (this.other ??= this.create(OTHER));
  }

  /** Every entry, the `_OTHER` one last if it exists. */
  *values(): IterableIterator<V> {
    yield* this.entries.values();
    if (this.other !== undefined) yield this.other;
  }
}
