/**
 * Cardinality bounded by construction. The OpenTelemetry SDK keeps at most `L − 1` attribute sets
 * per instrument (its cardinality limit `L`, 2,000 by default) and folds the rest into one
 * `otel.metric.overflow` set that has lost its queue, so queue-otel never lets an instrument reach
 * it. Every instrument's sets are counted in a {@link Ledger} of capacity `L − 1`, in three tiers:
 *
 * 1. **Reserved**: one set per instrument is held back for each queue, seen or not yet seen, up to
 *    `G = min(maxQueues, ⌊(L − 1) / 3⌋)` queues (its job name, outcome, error type, state or
 *    schedule `_OTHER`), so whatever happens later each queue's totals stay exact. Queues past `G` are
 *    reported as `_OTHER`, whose sets are reserved too.
 * 2. **Specific** sets (a job name, an outcome of a named job, an error type, a state, a schedule
 *    name) are created while the instrument, reservations included, holds fewer than ¾ of its
 *    capacity.
 * 3. **Fallback** sets of a queue that keep what matters most (the outcome of `_OTHER` jobs) use
 *    the rest; when that is full too, the queue's reserved set takes what comes.
 *
 * So no instrument passes `L − 1` sets, each queue's totals are exact, and what folds first is
 * what tells least: an error type, then a job name, then an outcome.
 */
import { OTHER } from '../semconv.js';

/** Share of an instrument's capacity that specific (named) attribute sets may use. */
const SPECIFIC_SHARE = 0.75;

/** The attribute sets of one instrument family: how many exist, and how many are held back. */
export class Ledger {
  private used = 0;
  private held = 0;

  constructor(
    private readonly capacity: () => number,
    /** Sets held back for queues not seen yet. */
    private readonly ahead: () => number,
    /** Called each time a set is refused (the caller warns once). */
    private readonly onFull: () => void,
  ) {}

  /** Holds `n` sets back for a queue now seen (they were counted in `ahead` until now). */
  reserve(n: number): void {
    this.held += n;
  }

  /** A set held back is now created (it was counted already). */
  useReserved(): void {
    if (this.held > 0) {
      this.held--;
      this.used++;
    }
  }

  /** A specific set, while the instrument is under its specific share. */
  takeSpecific(): boolean {
    return this.take(Math.floor(this.capacity() * SPECIFIC_SHARE));
  }

  /** A fallback set, while any unreserved room is left. */
  takeFallback(): boolean {
    return this.take(this.capacity());
  }

  /** Sets created and held back, for tests and the documented formula. */
  get size(): number {
    return this.used + this.held;
  }

  private take(limit: number): boolean {
    if (this.used + this.held + this.ahead() + 1 > limit) {
      this.onFull();
      return false;
    }
    this.used++;
    return true;
  }
}

/**
 * A map that admits at most `max` keys, each while `admit()` agrees; lookups of further keys share
 * the `other` entry. It is how job names are capped per queue: a bug that makes a new name per job
 * must not create a series per job. Entries are never evicted: a name keeps its series for the
 * life of the process (an evicting cache would let a flood of names push out real ones).
 */
export class CappedRegistry<V> {
  private readonly entries = new Map<string, V>();

  constructor(
    private readonly max: () => number,
    private readonly create: (key: string) => V,
    private readonly other: () => V,
    /** Whether one more entry may be created (a budget); called only below `max`. */
    private readonly admit: () => boolean = () => true,
    /** Called with the key each time it is folded into `other` because `max` was reached. */
    private readonly onCap: (key: string) => void = () => {},
  ) {}

  get(key: string): V {
    const found = this.entries.get(key);
    if (found !== undefined) return found;
    if (key === OTHER) return this.other();
    if (this.entries.size >= this.max()) {
      this.onCap(key);
      return this.other();
    }
    if (!this.admit()) return this.other();
    const created = this.create(key);
    this.entries.set(key, created);
    return created;
  }

  get size(): number {
    return this.entries.size;
  }

  /** Every specific entry (the `other` entry is the caller's). */
  values(): IterableIterator<V> {
    return this.entries.values();
  }
}
