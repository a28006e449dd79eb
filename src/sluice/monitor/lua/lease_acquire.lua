-- lease_acquire.lua: take the leader lease if it is free, or extend it if already ours.
--
-- KEYS: 1 lease key (sluice:{queue}:alerts:leader)
-- ARGV: 1 holder id (unique per process and start), 2 TTL (ms)
-- Returns 1 when the caller holds the lease afterwards (with a fresh TTL), 0 when another
-- holder has it.
-- Events: none.

local key, holder, ttl = KEYS[1], ARGV[1], tonumber(ARGV[2])

local current = redis.call('GET', key)
if current == holder then
  redis.call('PEXPIRE', key, ttl)
  return 1
end
if current then
  return 0
end
redis.call('SET', key, holder, 'PX', ttl)
return 1
