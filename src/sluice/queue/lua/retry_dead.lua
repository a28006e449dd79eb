-- retry_dead.lua: give a dead-lettered job a fresh set of attempts at the tail of its lane
-- (its conversation has moved on meanwhile, so it queues as a new arrival).
--
-- KEYS: 1 the queue's meta key (see lib/keys.lua; the other keys derive from the prefix).
-- ARGV: 1 prefix, 2 request id (lib/request_key.lua: a repeated call acts once), 3 job id
-- Returns 1 when the job was requeued, 0 when it is not a dead letter.
-- Events: dead_retried.
--!include lib/keys.lua
--!include lib/job_key.lua
--!include lib/lane_key.lua
--!include lib/now_ms.lua
--!include lib/fmt.lua
--!include lib/emit.lua
--!include lib/wake.lua
--!include lib/make_ready.lua
--!include lib/replayed.lua
--!include lib/remember.lua

local rid, id = ARGV[2], ARGV[3]
local earlier = replayed(rid)
if earlier then
  return tonumber(earlier)
end
if redis.call('ZREM', K_DEAD, id) == 0 then
  return 0
end
local now = now_ms()
local jk = job_key(id)
local key = redis.call('HGET', jk, 'key')
if not key then
  return 0
end
redis.call('HSET', jk, 'state', 'waiting', 'attempt', 0, 'h:retried', fmt(now))
redis.call('ZADD', K_WAITING, tonumber(redis.call('HGET', jk, 'h:enqueued')), id)
if redis.call('RPUSH', lane_key(key), id) == 1 and redis.call('HEXISTS', K_INFLIGHT, key) == 0 then
  make_ready(key, now)
  wake(1)
end
emit('dead_retried', id, key)
remember(rid, '1')
return 1
