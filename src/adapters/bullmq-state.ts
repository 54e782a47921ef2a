/**
 * Reading a BullMQ queue's state from Redis: depth by state, the oldest job ready to run and the
 * oldest failed job, in one round trip, and only by the process holding the queue's lease.
 *
 * One Lua script does it all (the lease `SET ... PX` and the reads run atomically in Redis), using
 * the key layout BullMQ 5 and 6 share (`<prefix>:<queue>:wait`, `:active`, ...): list lengths and
 * sorted-set cardinalities, the tail of the wait list (BullMQ pushes on the left and takes from the
 * right) and the lowest score of the failed set (scored by finish time). Never a scan.
 */
import type { QueueStateSource, StateUnavailable } from '../core/seam.js';
import { LUA_EXISTS, LUA_LEASE, type RedisPlace, redisStateSource, replyCount, replyTime } from './redis-lease.js';

const SCRIPT = `${LUA_LEASE}
local out = {1}
for _, list in ipairs({'wait', 'active', 'paused'}) do out[#out + 1] = redis.call('LLEN', prefix .. list) end
for _, set in ipairs({'delayed', 'prioritized', 'waiting-children', 'failed', 'completed'}) do
  out[#out + 1] = redis.call('ZCARD', prefix .. set)
end
local oldest = redis.call('LINDEX', prefix .. 'wait', -1)
if not oldest then oldest = redis.call('LINDEX', prefix .. 'paused', -1) end
local readyAt = -1
if oldest and string.sub(oldest, 1, 2) ~= '0:' then
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

export interface RedisLike {
  eval(script: string, numKeys: number, ...args: Array<string | number>): Promise<unknown>;
}

/** Whether BullMQ queue `queue` has keys under `place`. */
export async function bullmqQueueExists(place: RedisPlace<RedisLike>, queue: string): Promise<boolean> {
  return Number(await place.client.eval(LUA_EXISTS, 1, `${place.prefix}:${queue}:`, ...BULLMQ_KEYS)) === 1;
}

/** The parts of a BullMQ Queue, Worker or QueueEvents read here (bullmq 5 and 6). */
export interface BullQueueObject {
  name: string;
  /** Set by close(): the object's connection is going away. */
  closing?: unknown;
  opts?: { prefix?: string };
  /** bullmq 5 */
  client?: Promise<RedisLike>;
  /** bullmq 6: the Redis backend exposes its client; the PostgreSQL backend does not. */
  backend?: { client?: Promise<RedisLike> };
}

/** The connection of an open object, if it has a Redis one. */
export function clientOf(object: BullQueueObject): Promise<RedisLike> | undefined {
  const backend = object.backend;
  const client = backend !== undefined ? backend.client : object.client;
  return client !== undefined && typeof (client as Promise<unknown>).then === 'function' ? client : undefined;
}

/** The prefix option of an object (BullMQ's default is `bull`). */
export function prefixOf(object: BullQueueObject): string {
  return typeof object.opts?.prefix === 'string' ? object.opts.prefix : 'bull';
}

/** Keys one of which exists for any BullMQ queue that has been used (its Queue writes `meta`). */
export const BULLMQ_KEYS = ['meta', 'id', 'wait', 'active', 'paused', 'delayed', 'prioritized', 'waiting-children', 'failed', 'completed', 'events'];

/**
 * A state source for `queue`, read at the place (connection and prefix) `locate()` finds: the
 * queue's own open object, or for queues listed in the options, where the queue was found.
 * Resolves `null` when no open object is left: the process has closed the queue.
 */
export function bullmqStateSource(queue: string, locate: () => Promise<RedisPlace<RedisLike> | StateUnavailable | null>): QueueStateSource {
  return redisStateSource(queue, locate, (client, script, keys, ...args) => client.eval(script, keys, ...args), SCRIPT, (reply) => ({
    counts: {
      waiting: replyCount(reply, 1),
      active: replyCount(reply, 2),
      paused: replyCount(reply, 3),
      delayed: replyCount(reply, 4),
      prioritized: replyCount(reply, 5),
      'waiting-children': replyCount(reply, 6),
      failed: replyCount(reply, 7),
      completed: replyCount(reply, 8),
    },
    oldestReadyAt: replyTime(reply, 9),
    oldestFailedAt: replyTime(reply, 10),
  }));
}
