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
import type { QueueStateSource, StateUnavailable } from '../core/seam.js';
import { LUA_EXISTS, LUA_LEASE, type RedisPlace, redisStateSource, replyCount, replyTime } from './redis-lease.js';

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
  return redisStateSource(queue, locate, (client, script, keys, ...args) => client.eval(script, keys, ...args), SCRIPT, (reply) => ({
    counts: {
      waiting: replyCount(reply, 1),
      active: replyCount(reply, 2),
      paused: replyCount(reply, 3),
      delayed: replyCount(reply, 4),
      failed: replyCount(reply, 5),
      completed: replyCount(reply, 6),
    },
    oldestReadyAt: replyTime(reply, 7),
    oldestFailedAt: replyTime(reply, 8),
  }));
}
