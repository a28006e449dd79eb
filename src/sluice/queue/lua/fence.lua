-- fence.lua: a runner is about to cause an external effect (post a reply): confirm, in one
-- atomic step, that its lease is still its own and unexpired, record that an effect is in
-- flight, and extend the lease to cover the effect's timeout.
--
-- After this call no other runner can hold the job until `hold` has passed (recovery waits
-- for the lease), and a later runner of the same turn sees `fence` = this token on its jobs:
-- it knows a reply may have been posted and looks before posting its own. Without a
-- successful fence a runner must not act: its lease is gone and another runner may own the
-- turn.
--
-- KEYS: 1 the queue's meta key (see lib/keys.lua; the other keys derive from the prefix).
-- ARGV: 1 prefix, 2 hold (ms), 3 n, then n x (job id, reservation token): every job of the
--       turn, leader first
-- Returns {1, lease end (epoch ms, Redis clock)} or {0, why}.
-- Events: started (charge_starts), then fenced for the leader (info:
-- "worker|token|lease end").
--!include lib/keys.lua
--!include lib/job_key.lua
--!include lib/now_ms.lua
--!include lib/fmt.lua
--!include lib/emit.lua
--!include lib/refs_at.lua
--!include lib/charge_starts.lua

local now = now_ms()
local hold_until = now + tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local leases = {}
for i = 0, n - 1 do
  local id, token = ARGV[4 + 2 * i], ARGV[5 + 2 * i]
  local tok, state = unpack(redis.call('HMGET', job_key(id), 'token', 'state'))
  local lease = tonumber(redis.call('ZSCORE', K_ACTIVE, id))
  if state ~= 'active' or tok ~= token then
    return {0, 'job ' .. id .. ' is no longer leased to this runner'}
  end
  if not lease or lease <= now then
    return {0, 'lease of job ' .. id .. ' expired'}
  end
  leases[#leases + 1] = lease
end
local lease_end = hold_until
charge_starts(refs_at(4, n)) -- a prefetched turn that acts has started, whatever came first
for i = 0, n - 1 do
  local id, token = ARGV[4 + 2 * i], ARGV[5 + 2 * i]
  if leases[i + 1] > lease_end then lease_end = leases[i + 1] end
  redis.call('HSET', job_key(id), 'fence', token)
end
for i = 0, n - 1 do
  redis.call('ZADD', K_ACTIVE, 'XX', lease_end, ARGV[4 + 2 * i])
end
local leader = ARGV[4]
local key, worker = unpack(redis.call('HMGET', job_key(leader), 'key', 'worker'))
emit('fenced', leader, key, (worker or '') .. '|' .. ARGV[5] .. '|' .. fmt(lease_end))
return {1, fmt(lease_end)}
