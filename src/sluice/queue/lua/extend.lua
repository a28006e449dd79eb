-- extend.lua: a worker's heartbeat renews the leases of the jobs it holds, and charges the
-- attempts of prefetched jobs that started since its last call to Redis.
--
-- A lease is only ever moved forward (a fence may have set it further than one heartbeat),
-- and one that has already run out is not revived: its job may be recovered by any reserve
-- now, and the worker has stopped it locally (its own deadline is earlier than this one).
--
-- KEYS: 1 the queue's meta key (see lib/keys.lua; the other keys derive from the prefix).
-- ARGV: 1 prefix, 2 lease (ms), 3 n, then n x (job id, reservation token), then s, then
--       s x (job id, reservation token) of prefetched jobs that started (charge_starts)
-- Returns the ids whose reservation is no longer the caller's (lease expired, job
-- recovered, drained or cancelled).
-- Events: started (charge_starts).
--!include lib/keys.lua
--!include lib/job_key.lua
--!include lib/now_ms.lua
--!include lib/refs_at.lua
--!include lib/charge_starts.lua

local now = now_ms()
local until_ms = now + tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local s_at = 4 + 2 * n
charge_starts(refs_at(s_at + 1, tonumber(ARGV[s_at])))
local lost = {}
for i = 0, n - 1 do
  local id, token = ARGV[4 + 2 * i], ARGV[5 + 2 * i]
  local tok, state = unpack(redis.call('HMGET', job_key(id), 'token', 'state'))
  local lease = tonumber(redis.call('ZSCORE', K_ACTIVE, id))
  if state == 'active' and tok == token and lease and lease > now then
    if until_ms > lease then
      redis.call('ZADD', K_ACTIVE, 'XX', until_ms, id)
    end
  else
    lost[#lost + 1] = id
  end
end
return lost
