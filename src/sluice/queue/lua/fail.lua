-- fail.lua: a handler failed. Retry later at the head of its lane (the conversation waits,
-- so order holds), or dead-letter it after its last attempt or a non-retryable error (the
-- conversation moves on).
--
-- KEYS: the queue key vector (lib/core.lua).
-- ARGV: 1 prefix, 2 job id, 3 reservation token, 4 error text, 5 backoff (ms, computed by
--       the caller with jitter), 6 retryable (1/0), 7 monitoring (1/0),
--       8 m, then m x (hop name, epoch ms)
-- Returns 'retry', 'dead' or 'lost' (the reservation had expired; nothing changed).
--!include lib/core.lua
--!include lib/monitor.lua

local id, token, err = ARGV[2], ARGV[3], ARGV[4]
local jk = job_key(id)
local key, tok, state, attempt, max = unpack(redis.call('HMGET', jk, 'key', 'token', 'state',
  'attempt', 'max'))
if state ~= 'active' or tok ~= token then
  return 'lost'
end
local now = now_ms()
redis.call('ZREM', K_ACTIVE, id)
MONITOR = ARGV[7] == '1'
if not MONITOR then observe_outcome = nil end
local nmarks = tonumber(ARGV[8])
if nmarks > 0 then
  local fields = {}
  for m = 0, nmarks - 1 do
    fields[#fields + 1] = 'h:' .. ARGV[9 + 2 * m]
    fields[#fields + 1] = ARGV[10 + 2 * m]
  end
  redis.call('HSET', jk, unpack(fields))
end
count('failed', 1, now)
if observe_outcome then observe_outcome('fail') end
if ARGV[6] == '1' and tonumber(attempt) < tonumber(max) then
  requeue_head(id, key, now)
  redis.call('HSET', jk, 'state', 'delayed', 'err', err, 'h:failed', fmt(now))
  redis.call('ZADD', K_DELAYED, now + tonumber(ARGV[5]), key)
  count('retried', 1, now)
  if observe_outcome then observe_outcome('retry') end
  emit('retry', id, key, err)
  wake(1)
  flush_monitor(now)
  return 'retry'
end
bury(id, key, err, now)
flush_monitor(now)
return 'dead'
