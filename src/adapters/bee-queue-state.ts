/**
 * Reading a Bee-Queue queue's state from Redis in one round trip, only by the process holding the
 * queue's lease: one Lua script on Bee-Queue's keys (`<prefix>:<queue>:waiting` and `:active`
 * lists, `:delayed` sorted set, `:succeeded` and `:failed` sets, `:jobs` hash of JSON). The oldest
 * ready job is the tail of the waiting list (Bee-Queue pushes on the left, takes from the right);
 * its ready time is its `options.delay` (an absolute time) or `options.timestamp`. The failed set
 * is unordered and stores no failure time, so the oldest failed job's age is not reported.
 */
import type { QueueStateReading, QueueStateSource } from '../core/seam.js';
import { LUA_LEASE } from './redis-lease.js';

const SCRIPT = `${LUA_LEASE}
local prefix = KEYS[2]
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
  client?: { eval?: (...args: unknown[]) => unknown } | null;
}

/**
 * A state source for `queue`, through the connection of an open Bee-Queue queue of this process.
 * Resolves `null` when none is left open.
 */
export function beeQueueStateSource(holder: () => BeeStateQueue | undefined, queue: string): QueueStateSource {
  return {
    async read(owner, leaseMs): Promise<QueueStateReading | undefined | null> {
      const object = holder();
      const client = object?.client;
      if (object === undefined || client == null || typeof client.eval !== 'function') return null;
      // keyPrefix is "<prefix>:<name>:"; for another queue of the same prefix, swap the name.
      const own = object.settings?.keyPrefix ?? `bq:${object.name}:`;
      const prefix = queue === object.name ? own : `${own.slice(0, own.length - object.name.length - 1)}${queue}:`;
      // node-redis 3 (Bee-Queue's default) takes a callback; ioredis accepts one too.
      const reply = await new Promise<unknown>((resolve, reject) => {
        client.eval!(SCRIPT, 2, `${prefix}queue-otel:state-lease`, prefix, owner, leaseMs, (error: unknown, value: unknown) =>
          error ? reject(error) : resolve(value),
        );
      });
      if (!Array.isArray(reply) || Number(reply[0]) !== 1) return undefined;
      const n = (i: number) => Number(reply[i] ?? 0);
      const readyAt = Number(reply[6]);
      return {
        counts: { waiting: n(1), active: n(2), delayed: n(3), failed: n(4), completed: n(5) },
        oldestReadyAt: readyAt >= 0 ? readyAt : undefined,
        oldestFailedAt: undefined,
        hasFailedOldest: false,
      };
    },
  };
}
