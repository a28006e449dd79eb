-- cancel.lua: remove every waiting (and delayed) job of one conversation, e.g. when it was
-- resolved. Its running job, if any, finishes.
--
-- KEYS: 1 the queue's meta key (see lib/core.lua; the other keys derive from the prefix).
-- ARGV: 1 prefix, 2 conversation key, 3 reason
-- Returns how many jobs were removed.
--!include lib/core.lua

local key = ARGV[2]
local now = now_ms()
local lk = lane_key(key)
local ids = redis.call('LRANGE', lk, 0, -1)
for _, id in ipairs(ids) do
  redis.call('DEL', job_key(id), payload_key(id))
  redis.call('ZREM', K_WAITING, id)
  emit('cancelled', id, key, ARGV[3])
end
redis.call('DEL', lk)
redis.call('ZREM', K_READY, key)
redis.call('ZREM', K_DELAYED, key)
count('cancelled', #ids, now)
return #ids
