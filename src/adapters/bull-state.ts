/**
 * Reading a Bull 4 queue's state from Redis: depth by state, the oldest job ready to run and the
 * oldest failed job, in one round trip, only by the process holding the queue's lease.
 *
 * One Lua script (the lease `SET ... PX` and the reads run atomically), on Bull's key layout
 * (`<prefix>:<queue>:wait`, `:active`, `:paused` lists; `:delayed`, `:failed`, `:completed` sorted
 * sets, the last two scored by finish time): list lengths and set sizes, the tail of the wait list
 * (Bull pushes on the left and takes from the right; prioritized jobs are placed inside the same
 * list, so with priorities the tail is the next job to run rather than strictly the oldest) and
 * the lowest score of the failed set. Never a scan.
 */
import type { QueueStateResult, QueueStateSource, StateUnavailable } from '../core/seam.js';
import { LUA_EXISTS, LUA_LEASE, LUA_RELEASE, type RedisPlace, leaseAnswer, leaseKey, whenReady } from './redis-lease.js';

const SCRIPT = `${LUA_LEASE}
local out = {1}
for _, list in ipairs({'wait', 'active', 'paused'}) do out[#out + 1] = redis.call('LLEN', prefix .. list) end
for _, set in ipairs({'delayed', 'failed', 'completed'}) do out[#out + 1] = redis.call('ZCARD', prefix .. set) end
local oldest = redis.call('LINDEX', prefix .. 'wait', -1)
if not oldest then oldest = redis.call('LINDEX', prefix .. 'paused', -1) end
local readyAt = -1
if oldest then
  local fields = redis.call('HMGET', prefix .. oldest, 'timestamp', 'opts')
  readyAt = tonumber(fields[1]) or -1
  if readyAt >= 0 and fields[2] then
    local ok, opts = pcall(cjson.decode, fields[2])
    if ok and type(opts) == 'table' and tonumber(opts.delay) then readyAt = readyAt + tonumber(opts.delay) end
  end
end
out[#out + 1] = tostring(readyAt)
local failed = redis.call('ZRANGE', prefix .. 'failed', 0, 0, 'WITHSCORES')
out[#out + 1] = failed[2] or '-1'
return out
`;

export interface BullRedisLike {
  eval(script: string, numKeys: number, ...args: Array<string | number>): Promise<unknown>;
}

/** The parts of a Bull Queue read here. */
export interface BullStateQueue {
  name: string;
  /** Set by close(). */
  closing?: unknown;
  keyPrefix?: string;
  client?: BullRedisLike;
}

/** Keys one of which exists for any Bull queue that has been used. */
export const BULL_KEYS = ['id', 'wait', 'active', 'paused', 'delayed', 'failed', 'completed', 'meta-paused', 'stalled-check'];

/** Whether Bull queue `queue` has keys under `place`. */
export async function bullQueueExists(place: RedisPlace<BullRedisLike>, queue: string): Promise<boolean> {
  return Number(await place.client.eval(LUA_EXISTS, 1, `${place.prefix}:${queue}:`, ...BULL_KEYS)) === 1;
}

/** The connection and prefix of an open Bull queue. */
export function bullPlace(queue: BullStateQueue | undefined): RedisPlace<BullRedisLike> | undefined {
  const client = queue?.client;
  if (queue === undefined || client === undefined || typeof client.eval !== 'function') return undefined;
  return { client, prefix: queue.keyPrefix ?? 'bull' };
}

/**
 * A state source for `queue`, read at the place (connection and prefix) `locate()` finds.
 * Resolves `null` when no open queue is left: the process no longer has the queue.
 */
export function bullStateSource(queue: string, locate: () => Promise<RedisPlace<BullRedisLike> | StateUnavailable | null>): QueueStateSource {
  let leased: { client: BullRedisLike; key: string } | undefined;
  return {
    async read({ owner, leaseMs, begin }): Promise<QueueStateResult> {
      const place = await locate();
      if (place === null || 'kind' in place) return place;
      await whenReady(place.client);
      await begin();
      const prefix = `${place.prefix}:${queue}:`;
      const key = leaseKey(prefix);
      const reply = (await place.client.eval(SCRIPT, 2, key, prefix, owner, leaseMs)) as Array<number | string>;
      const held = leaseAnswer(reply);
      if (held !== undefined) return held;
      if (leaseMs > 0) leased = { client: place.client, key };
      const n = (i: number) => Number(reply[i] ?? 0);
      const readyAt = Number(reply[7]);
      const failedAt = Number(reply[8]);
      return {
        counts: { waiting: n(1), active: n(2), paused: n(3), delayed: n(4), failed: n(5), completed: n(6) },
        oldestReadyAt: readyAt >= 0 ? readyAt : undefined,
        oldestFailedAt: failedAt >= 0 ? failedAt : undefined,
      };
    },
    async release(owner) {
      if (leased === undefined) return;
      const { client, key } = leased;
      leased = undefined;
      await client.eval(LUA_RELEASE, 1, key, owner);
    },
  };
}
