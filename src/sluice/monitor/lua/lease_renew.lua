-- lease_renew.lua: extend the leader lease, only if the caller still holds it.
--
-- KEYS: 1 lease key (sluice:{queue}:alerts:leader)
-- ARGV: 1 holder id, 2 TTL (ms)
-- Returns 1 when renewed, 0 when the lease expired or another holder took it: the caller
-- must stop acting as leader at once. Never takes a free lease (that is acquire's job, so a
-- leader that lost its lease notices it instead of silently re-taking it).
-- Events: none.

local key, holder, ttl = KEYS[1], ARGV[1], tonumber(ARGV[2])

if redis.call('GET', key) == holder then
  redis.call('PEXPIRE', key, ttl)
  return 1
end
return 0
