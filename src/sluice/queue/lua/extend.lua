-- extend.lua: a worker's heartbeat renews the leases of the jobs it is running.
--
-- KEYS: 1 the queue's meta key (see lib/core.lua; the other keys derive from the prefix).
-- ARGV: 1 prefix, 2 lease (ms), 3 n, then n x (job id, reservation token)
-- Returns the ids whose reservation is no longer the caller's (lease already expired).
--!include lib/core.lua

local now = now_ms()
local until_ms = now + tonumber(ARGV[2])
local lost = {}
for i = 0, tonumber(ARGV[3]) - 1 do
  local id, token = ARGV[4 + 2 * i], ARGV[5 + 2 * i]
  local tok, state = unpack(redis.call('HMGET', job_key(id), 'token', 'state'))
  if state == 'active' and tok == token then
    redis.call('ZADD', K_ACTIVE, 'XX', until_ms, id)
  else
    lost[#lost + 1] = id
  end
end
return lost
