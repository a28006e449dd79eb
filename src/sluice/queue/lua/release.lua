-- release.lua: a worker shutting down hands back jobs it could not finish. They return to
-- the head of their lanes with their deadline and without an attempt penalty. A handed-back
-- batch did not fail, so it is not marked solo (it is reserved as a batch again); a job
-- that was already solo (retried alone after a failure) stays solo.
--
-- A job whose handler was cancelled mid-turn gets `reason` as its recorded error: its turn
-- may have sent something (a reply POST) that lands later, and the next run must look twice.
-- Jobs that never started (a worker's prefetch buffer) are handed back with no reason.
--
-- KEYS: 1 the queue's meta key (see lib/core.lua; the other keys derive from the prefix).
-- ARGV: 1 prefix, 2 n, 3 reason ('' for none), then n x (job id, reservation token), jobs
--       of one lane in lane order (they are pushed back last to first, so the order holds)
-- Returns how many were handed back.
--!include lib/core.lua

local now = now_ms()
local released = 0
for i = tonumber(ARGV[2]) - 1, 0, -1 do
  local id, token = ARGV[4 + 2 * i], ARGV[5 + 2 * i]
  local jk = job_key(id)
  local key, tok, state = unpack(redis.call('HMGET', jk, 'key', 'token', 'state'))
  if state == 'active' and tok == token then
    redis.call('ZREM', K_ACTIVE, id)
    redis.call('HINCRBY', jk, 'attempt', -1)
    if ARGV[3] ~= '' then
      redis.call('HSET', jk, 'err', ARGV[3])
    end
    requeue_head(id, key, now)
    ready_again(key, jk, now)
    emit('released', id, key)
    released = released + 1
  end
end
wake(released)
return released
