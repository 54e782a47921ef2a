/**
 * The start of every Redis state-read script (BullMQ, Bull, Bee-Queue): the lease that makes one process
 * of a cluster read a queue. `KEYS[1]` is the lease key, `ARGV[1]` the owner, `ARGV[2]` the lease
 * in milliseconds (0: no lease, every process reads). Returns `{0}` when another process holds it;
 * otherwise the holder renews it and the script goes on, atomically, to its reads.
 */
export const LUA_LEASE = `
local lease = KEYS[1]
local owner, leaseMs = ARGV[1], tonumber(ARGV[2])
if leaseMs > 0 then
  local holder = redis.call('GET', lease)
  if holder and holder ~= owner then return {0} end
  redis.call('SET', lease, owner, 'PX', leaseMs)
end
`;
