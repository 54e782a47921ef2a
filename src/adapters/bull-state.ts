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
import type { QueueStateReading, QueueStateSource } from '../core/seam.js';
import { LUA_LEASE } from './redis-lease.js';

const SCRIPT = `${LUA_LEASE}
local prefix = KEYS[2]
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

interface RedisLike {
  eval(script: string, numKeys: number, ...args: Array<string | number>): Promise<unknown>;
}

/** The parts of a Bull Queue read here. */
export interface BullStateQueue {
  name: string;
  /** Set by close(). */
  closing?: unknown;
  keyPrefix?: string;
  client?: RedisLike;
}

/**
 * A state source for `queue`, read through the connection of whichever open Bull queue `holder()`
 * returns. Resolves `null` when none is left open: the process no longer has the queue.
 */
export function bullStateSource(holder: () => BullStateQueue | undefined, queue: string): QueueStateSource {
  return {
    async read(owner, leaseMs): Promise<QueueStateReading | undefined | null> {
      const object = holder();
      const client = object?.client;
      if (object === undefined || client === undefined || typeof client.eval !== 'function') return null;
      const prefix = `${object.keyPrefix ?? 'bull'}:${queue}:`;
      const reply = (await client.eval(SCRIPT, 2, `${prefix}queue-otel:state-lease`, prefix, owner, leaseMs)) as Array<number | string>;
      if (!Array.isArray(reply) || reply[0] !== 1) return undefined;
      const n = (i: number) => Number(reply[i] ?? 0);
      const readyAt = Number(reply[7]);
      const failedAt = Number(reply[8]);
      return {
        counts: { waiting: n(1), active: n(2), paused: n(3), delayed: n(4), failed: n(5), completed: n(6) },
        oldestReadyAt: readyAt >= 0 ? readyAt : undefined,
        oldestFailedAt: failedAt >= 0 ? failedAt : undefined,
      };
    },
  };
}
