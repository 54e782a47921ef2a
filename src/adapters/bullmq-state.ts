/**
 * Reading a BullMQ queue's state from Redis: depth by state, the oldest job ready to run and the
 * oldest failed job, in one round trip, and only by the process holding the queue's lease.
 *
 * One Lua script does it all (the lease `SET ... PX` and the reads run atomically in Redis), using
 * the key layout BullMQ 5 and 6 share (`<prefix>:<queue>:wait`, `:active`, ...): list lengths and
 * sorted-set cardinalities, the tail of the wait list (BullMQ pushes on the left and takes from the
 * right) and the lowest score of the failed set (scored by finish time). Never a scan.
 */
import type { QueueStateReading, QueueStateSource } from '../core/seam.js';
import { LUA_LEASE } from './redis-lease.js';

const SCRIPT = `${LUA_LEASE}
local prefix = KEYS[2]
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

interface RedisLike {
  eval(script: string, numKeys: number, ...args: Array<string | number>): Promise<unknown>;
}

/** The parts of a BullMQ Queue, Worker or QueueEvents read here (bullmq 5 and 6). */
export interface BullQueueObject {
  name: string;
  /** Set by close(): the object's connection is going away. */
  closing?: unknown;
  opts?: { prefix?: string };
  toKey?(type: string): string;
  /** bullmq 5 */
  client?: Promise<RedisLike>;
  /** bullmq 6: the Redis backend exposes its client; the PostgreSQL backend does not. */
  backend?: { client?: Promise<RedisLike> };
}

function clientOf(object: BullQueueObject): Promise<RedisLike> | undefined {
  const backend = object.backend;
  const client = backend !== undefined ? backend.client : object.client;
  return client !== undefined && typeof (client as Promise<unknown>).then === 'function' ? client : undefined;
}

/**
 * A state source for `queue`, reading through the connection of whichever open BullMQ object
 * `holder()` returns (a Queue, Worker or QueueEvents, of this queue or, for queues listed in the
 * options, of any queue with the same prefix). Resolves `null` when no open object is left: the
 * process has closed the queue, so it stops reading it.
 */
export function bullmqStateSource(holder: () => BullQueueObject | undefined, queue: string): QueueStateSource {
  return {
    async read(owner, leaseMs): Promise<QueueStateReading | undefined | null> {
      const object = holder();
      const client = object === undefined ? undefined : clientOf(object);
      if (object === undefined || client === undefined) return null;
      const base = object.toKey?.('') ?? `${object.opts?.prefix ?? 'bull'}:${object.name}:`;
      // toKey('') is "<prefix>:<name>:"; for another queue of the same prefix, swap the name.
      const prefix = queue === object.name ? base : `${base.slice(0, base.length - object.name.length - 1)}${queue}:`;
      const redis = await client;
      const reply = (await redis.eval(SCRIPT, 2, `${prefix}queue-otel:state-lease`, prefix, owner, leaseMs)) as Array<number | string>;
      if (!Array.isArray(reply) || reply[0] !== 1) return undefined;
      const n = (i: number) => Number(reply[i] ?? 0);
      const readyAt = Number(reply[9]);
      const failedAt = Number(reply[10]);
      return {
        counts: {
          waiting: n(1),
          active: n(2),
          paused: n(3),
          delayed: n(4),
          prioritized: n(5),
          'waiting-children': n(6),
          failed: n(7),
          completed: n(8),
        },
        oldestReadyAt: readyAt >= 0 ? readyAt : undefined,
        oldestFailedAt: failedAt >= 0 ? failedAt : undefined,
      };
    },
  };
}
