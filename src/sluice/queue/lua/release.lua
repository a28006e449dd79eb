-- release.lua: a worker shutting down hands back jobs it could not finish. They return to
-- the head of their lanes with their deadline and without an attempt penalty. A handed-back
-- batch did not fail, so it is not marked solo (it is reserved as a batch again); a job
-- that was already solo (retried alone after a failure) stays solo.
--
-- A job whose handler was cancelled mid-turn gets `reason` as its recorded error: its turn
-- may have sent something (a reply POST) that lands later, and the next run must look twice.
-- Jobs that never started (a worker's prefetch buffer) are handed back with no reason.
--
-- A prefetched job that never started was never charged an attempt, so none is given back.
--
-- KEYS: 1 the queue's meta key (see lib/keys.lua; the other keys derive from the prefix).
-- ARGV: 1 prefix, 2 request id (lib/request_key.lua: a repeated call acts once), 3 n,
--       4 reason ('' for none), then n x (job id, reservation token), jobs of one lane in
--       lane order (they are pushed back last to first, so the order holds)
-- Returns how many were handed back.
-- Events: released per job handed back.
--!include lib/keys.lua
--!include lib/job_key.lua
--!include lib/now_ms.lua
--!include lib/emit.lua
--!include lib/wake.lua
--!include lib/requeue_head.lua
--!include lib/ready_again.lua
--!include lib/replayed.lua
--!include lib/remember.lua

local rid = ARGV[2]
local earlier = replayed(rid)
if earlier then
  return tonumber(earlier)
end
local now = now_ms()
local released = 0
for i = tonumber(ARGV[3]) - 1, 0, -1 do
  local id, token = ARGV[5 + 2 * i], ARGV[6 + 2 * i]
  local jk = job_key(id)
  local key, tok, state, pf = unpack(redis.call('HMGET', jk, 'key', 'token', 'state', 'pf'))
  if state == 'active' and tok == token then
    redis.call('ZREM', K_ACTIVE, id)
    if pf ~= '1' then
      redis.call('HINCRBY', jk, 'attempt', -1)
    end
    if ARGV[4] ~= '' then
      redis.call('HSET', jk, 'err', ARGV[4])
    end
    requeue_head(id, key, now)
    ready_again(key, jk, now)
    emit('released', id, key)
    released = released + 1
  end
end
wake(released)
remember(rid, tostring(released))
return released
