-- cancel.lua: remove every waiting (and delayed) job of one conversation, e.g. when it was
-- resolved, and its turn if that sits unstarted in a worker's prefetch buffer (workers hear
-- it on the control channel). Its running job, if any, finishes.
--
-- KEYS: 1 the queue's meta key (see lib/keys.lua; the other keys derive from the prefix).
-- ARGV: 1 prefix, 2 request id (lib/request_key.lua: a repeated call acts once),
--       3 conversation key, 4 reason
-- Returns how many jobs were removed.
-- Events: cancelled per job removed; `cancel:<key>` on the control channel.
--!include lib/keys.lua
--!include lib/job_key.lua
--!include lib/payload_key.lua
--!include lib/lane_key.lua
--!include lib/now_ms.lua
--!include lib/emit.lua
--!include lib/count.lua
--!include lib/announce.lua
--!include lib/discard_prefetched.lua
--!include lib/replayed.lua
--!include lib/remember.lua

local rid = ARGV[2]
local earlier = replayed(rid)
if earlier then
  return tonumber(earlier)
end
local key = ARGV[3]
local now = now_ms()
local lk = lane_key(key)
local ids = redis.call('LRANGE', lk, 0, -1)
for _, id in ipairs(ids) do
  redis.call('DEL', job_key(id), payload_key(id))
  redis.call('ZREM', K_WAITING, id)
  emit('cancelled', id, key, ARGV[4])
end
redis.call('DEL', lk)
redis.call('ZREM', K_READY, key)
redis.call('ZREM', K_DELAYED, key)
local removed = #ids + discard_prefetched(key, ARGV[4])
count('cancelled', removed, now)
announce('cancel:' .. key)
remember(rid, tostring(removed))
return removed
