/**
 * The lease that makes one process of a cluster read a Redis-backed queue's state (BullMQ, Bull,
 * Bee-Queue), and how a queue listed by name only is found under its prefix.
 *
 * The lease key is `queue-otel:<prefix>:<queue>:state-lease`: outside the queue's own key space
 * (so `obliterate()` and anything else that removes `<prefix>:<queue>:*` leaves the queue truly
 * empty), and in the same Redis Cluster hash slot as the queue's keys, since the only `{...}` hash
 * tag in it is the one of the queue's prefix or name.
 */
import type { LeaseHeld, QueueEntry, QueueStateResult, QueueStateSource, StateUnavailable } from '../core/seam.js';

/** The lease key of the queue whose keys start with `queuePrefix` (`<prefix>:<queue>:`). */
export function leaseKey(queuePrefix: string): string {
  return `queue-otel:${queuePrefix}state-lease`;
}

/**
 * The start of every Redis state-read script. `KEYS[1]` is the lease key, `KEYS[2]` the queue's key
 * prefix (`<prefix>:<queue>:`), `ARGV[1]` the owner, `ARGV[2]` the lease in milliseconds (0: no
 * lease, every process reads). Returns `{0, pttl}` when another process holds the lease; otherwise
 * the holder renews it and the script goes on, atomically, to its reads.
 */
export const LUA_LEASE = `
local lease, prefix = KEYS[1], KEYS[2]
local owner, leaseMs = ARGV[1], tonumber(ARGV[2])
if leaseMs > 0 then
  local holder = redis.call('GET', lease)
  if holder and holder ~= owner then return {0, redis.call('PTTL', lease)} end
  redis.call('SET', lease, owner, 'PX', leaseMs)
end
`;

/** 1 when a key `KEYS[1] .. ARGV[i]` exists for some i (a queue's keys under its prefix), else 0. */
export const LUA_EXISTS = `for _, key in ipairs(ARGV) do if redis.call('EXISTS', KEYS[1] .. key) == 1 then return 1 end end return 0`;

/** Deletes the lease if `ARGV[1]` holds it. */
export const LUA_RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`;

/** The script's answer when it did not read (another process holds the lease), else undefined. */
export function leaseAnswer(reply: unknown): LeaseHeld | undefined {
  if (!Array.isArray(reply) || Number(reply[0]) === 0) {
    const pttl = Array.isArray(reply) ? Number(reply[1]) : NaN;
    return pttl > 0 ? { kind: 'held', retryInMs: pttl } : { kind: 'held' };
  }
  return undefined;
}

export function notFound(queue: string, prefixes: readonly string[]): string {
  return `no queue "${queue}" was found under ${prefixes.map((p) => `"${p}"`).join(' or ')}; list it in the \`queues\` option as { name: '${queue}', prefix: '<its prefix>' }`;
}

/** A place a queue may live: a connection and the key prefix of the queue there. */
export interface RedisPlace<C> {
  client: C;
  /** The library's prefix option (`bull`, `{emails}`, ...). */
  prefix: string;
}

/**
 * Finds where a queue listed by name lives, among the places (connection, prefix) this process's
 * open queues use: the one place where its keys exist (`exists`), remembered once found. A queue
 * found nowhere, or in more than one place, is not read (reading it under a guessed prefix would
 * report an empty queue). With the prefix given, the queue is read there; only the connection may
 * need finding, when the process has more than one.
 */
export function placeFinder<C>(
  queue: string,
  places: () => Promise<ReadonlyArray<RedisPlace<C>>>,
  exists: (place: RedisPlace<C>) => Promise<boolean>,
  prefix: string | undefined,
): () => Promise<RedisPlace<C> | StateUnavailable | null> {
  let found: RedisPlace<C> | undefined;
  return async () => {
    const all = await places();
    if (all.length === 0) return null;
    if (found !== undefined && all.some((p) => p.client === found!.client && p.prefix === found!.prefix)) return found;
    found = undefined;
    const clients = [...new Set(all.map((p) => p.client))];
    const candidates =
      prefix !== undefined
        ? clients.map((client) => ({ client, prefix }))
        : uniquePlaces(all);
    if (prefix !== undefined && candidates.length === 1) return (found = candidates[0]!);
    const hits: Array<RedisPlace<C>> = [];
    for (const place of candidates) if (await exists(place)) hits.push(place);
    if (hits.length === 1) return (found = hits[0]!);
    const prefixes = [...new Set(candidates.map((p) => p.prefix))];
    if (hits.length === 0) return { kind: 'unavailable', reason: notFound(queue, prefixes) };
    return {
      kind: 'unavailable',
      reason: `queue "${queue}" exists in more than one place (${[...new Set(hits.map((p) => `"${p.prefix}"`))].join(', ')}${hits.length > new Set(hits.map((p) => p.prefix)).size ? ', on more than one connection' : ''}); list it in the \`queues\` option with its prefix`,
    };
  };
}

function uniquePlaces<C>(places: ReadonlyArray<RedisPlace<C>>): Array<RedisPlace<C>> {
  const out: Array<RedisPlace<C>> = [];
  for (const p of places) if (!out.some((o) => o.client === p.client && o.prefix === p.prefix)) out.push(p);
  return out;
}

/**
 * Where a watched queue is read: `own()`, the place of an open object of the queue itself, while
 * there is one; for a queue listed in the options (`entry`), else where {@link placeFinder} finds it
 * among `all()`, the places of this process's open queues. `null`: nothing left to read through.
 */
export function locator<C>(
  queue: string,
  entry: QueueEntry | undefined,
  own: () => RedisPlace<C> | undefined | Promise<RedisPlace<C> | undefined>,
  all: () => Promise<ReadonlyArray<RedisPlace<C>>>,
  exists: (place: RedisPlace<C>) => Promise<boolean>,
): () => Promise<RedisPlace<C> | StateUnavailable | null> {
  const find = entry === undefined ? undefined : placeFinder(queue, all, exists, entry.prefix);
  return async () => (await own()) ?? (find === undefined ? null : find());
}

/**
 * The queues to watch when an object of `queue` starts working: that queue, and those listed in
 * the options, each with its entry when it is listed (a listed queue whose objects close goes on
 * being read where it is found).
 */
export function watched(queue: string, listed: readonly QueueEntry[]): Array<{ name: string; entry: QueueEntry | undefined }> {
  return [{ name: queue, entry: listed.find((e) => e.name === queue) }, ...listed.filter((e) => e.name !== queue).map((entry) => ({ name: entry.name, entry }))];
}

/**
 * Resolves once a Redis client is connected (ioredis `status`, node-redis 3 `ready`), so that the
 * time a connection takes to come up is not counted in a read's timeout.
 */
export async function whenReady(client: unknown): Promise<void> {
  const c = client as { status?: unknown; ready?: unknown; once?: (event: string, listener: () => void) => unknown };
  const waiting = (typeof c.status === 'string' && c.status !== 'ready') || c.ready === false;
  if (!waiting || typeof c.once !== 'function') return;
  await new Promise<void>((resolve) => c.once!('ready', () => resolve()));
}

/** EVAL on the library's client: `(client, script, numberOfKeys, ...keysAndArgs)`. */
export type RedisEval<C> = (client: C, script: string, numberOfKeys: number, ...args: Array<string | number>) => Promise<unknown>;

/**
 * The state source of one Redis-backed queue: finds where it lives (`locate`), runs the library's
 * `script` (which takes the lease and reads in one round trip; see LUA_LEASE) and decodes its reply
 * with `decode`; `release` gives the lease back when the process stops reading the queue.
 * Resolves `null` when the process no longer has the queue.
 */
export function redisStateSource<C>(
  queue: string,
  locate: () => Promise<RedisPlace<C> | StateUnavailable | null>,
  evaluate: RedisEval<C>,
  script: string,
  decode: (reply: readonly unknown[]) => QueueStateResult,
): QueueStateSource {
  let leased: { client: C; key: string } | undefined;
  return {
    async read({ owner, leaseMs, begin }): Promise<QueueStateResult> {
      const place = await locate();
      if (place === null || 'kind' in place) return place;
      await whenReady(place.client);
      await begin();
      const prefix = `${place.prefix}:${queue}:`;
      const key = leaseKey(prefix);
      const reply = await evaluate(place.client, script, 2, key, prefix, owner, leaseMs);
      const held = leaseAnswer(reply);
      if (held !== undefined) return held;
      if (leaseMs > 0) leased = { client: place.client, key };
      return decode(reply as unknown[]);
    },
    async release(owner) {
      if (leased === undefined) return;
      const { client, key } = leased;
      leased = undefined;
      await evaluate(client, LUA_RELEASE, 1, key, owner);
    },
  };
}

/** A count in a state script's reply (absent: 0). */
export function replyCount(reply: readonly unknown[], i: number): number {
  return Number(reply[i] ?? 0);
}

/** A time in a state script's reply, ms since the epoch; the scripts say "none" with -1. */
export function replyTime(reply: readonly unknown[], i: number): number | undefined {
  const at = Number(reply[i]);
  return at >= 0 ? at : undefined;
}
