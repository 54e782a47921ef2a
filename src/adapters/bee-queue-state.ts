/**
 * Reading a Bee-Queue queue's state from Redis in one round trip, only by the process holding the
 * queue's lease: one Lua script on Bee-Queue's keys (`<prefix>:<queue>:waiting` and `:active`
 * lists, `:delayed` sorted set, `:succeeded` and `:failed` sets, `:jobs` hash of JSON). The oldest
 * ready job is the tail of the waiting list (Bee-Queue pushes on the left, takes from the right);
 * its ready time is its `options.delay` (an absolute time) or `options.timestamp`. The failed set
 * is unordered and stores no failure time, so the oldest failed job's age is not reported.
 */
import type { QueueStateSource, StateUnavailable } from '../core/seam.js';
import { LUA_EXISTS, LUA_LEASE, type RedisPlace, redisStateSource, replyCount, replyTime } from './redis-lease.js';

const SCRIPT = `${LUA_LEASE}
local out = {1, redis.call('LLEN', prefix .. 'waiting'), redis.call('LLEN', prefix .. 'active'),
  redis.call('ZCARD', prefix .. 'delayed'), redis.call('SCARD', prefix .. 'failed'), redis.call('SCARD', prefix .. 'succeeded')}
local readyAt = -1
local oldest = redis.call('LINDEX', prefix .. 'waiting', -1)
if oldest then
  local json = redis.call('HGET', prefix .. 'jobs', oldest)
  if json then
    local ok, job = pcall(cjson.decode, json)
    if ok and type(job) == 'table' and type(job.options) == 'table' then
      readyAt = tonumber(job.options.delay) or tonumber(job.options.timestamp) or -1
    end
  end
end
out[#out + 1] = tostring(readyAt)
return out
`;

/** The parts of a Bee-Queue Queue read here. */
export interface BeeStateQueue {
  name: string;
  _isClosed?: boolean;
  settings?: { keyPrefix?: string };
  client?: BeeRedisLike | null;
}
/** node-redis 3 (Bee-Queue's default) takes a callback; ioredis accepts one too. */
export interface BeeRedisLike {
  eval?: (...args: unknown[]) => unknown;
}

function evalWith(client: BeeRedisLike, ...args: Array<string | number>): Promise<unknown> {
  return new Promise<unknown>((resolve, reject) => {
    client.eval!(...args, (error: unknown, value: unknown) => (error ? reject(error) : resolve(value)));
  });
}

/** Keys one of which exists for any Bee-Queue queue that has been used. */
export const BEE_KEYS = ['id', 'jobs', 'waiting', 'active', 'delayed', 'succeeded', 'failed', 'stallBlock'];

/**
 * The connection and prefix of an open Bee-Queue queue. Bee-Queue's `keyPrefix` setting is
 * "<prefix>:<name>:"; the place's prefix is the part before the name.
 */
export function beePlace(queue: BeeStateQueue | undefined): RedisPlace<BeeRedisLike> | undefined {
  const client = queue?.client;
  if (queue === undefined || client == null || typeof client.eval !== 'function') return undefined;
  const own = queue.settings?.keyPrefix ?? `bq:${queue.name}:`;
  const prefix = own.endsWith(`:${queue.name}:`) ? own.slice(0, own.length - queue.name.length - 2) : 'bq';
  return { client, prefix };
}

/** Whether Bee-Queue queue `queue` has keys under `place`. */
export async function beeQueueExists(place: RedisPlace<BeeRedisLike>, queue: string): Promise<boolean> {
  return Number(await evalWith(place.client, LUA_EXISTS, 1, `${place.prefix}:${queue}:`, ...BEE_KEYS)) === 1;
}

/**
 * A state source for `queue`, read at the place (connection and prefix) `locate()` finds.
 * Resolves `null` when no open queue is left.
 */
export function beeQueueStateSource(queue: string, locate: () => Promise<RedisPlace<BeeRedisLike> | StateUnavailable | null>): QueueStateSource {
  return redisStateSource(queue, locate, evalWith, SCRIPT, (reply) => ({
    counts: { waiting: replyCount(reply, 1), active: replyCount(reply, 2), delayed: replyCount(reply, 3), failed: replyCount(reply, 4), completed: replyCount(reply, 5) },
    oldestReadyAt: replyTime(reply, 6),
    oldestFailedAt: undefined,
    hasFailedOldest: false,
  }));
}
