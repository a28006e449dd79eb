-- lease_release.lua: give the leader lease up, only if the caller holds it.
--
-- KEYS: 1 lease key (sluice:{queue}:alerts:leader)
-- ARGV: 1 holder id
-- Returns 1 when deleted, 0 when the caller did not hold it (expired, or another holder
-- has it now: deleting theirs would create two leaders).
-- Events: none.

local key, holder = KEYS[1], ARGV[1]

if redis.call('GET', key) == holder then
  redis.call('DEL', key)
  return 1
end
return 0
