-- drain.lua: remove every waiting and delayed job (running ones finish). O(waiting jobs):
-- an operator's emergency action, not a hot path.
--
-- KEYS: 1 the queue's meta key (see lib/core.lua; the other keys derive from the prefix).
-- ARGV: 1 prefix
-- Returns how many jobs were removed.
--!include lib/core.lua

local now = now_ms()
local ids = redis.call('ZRANGE', K_WAITING, 0, -1)
local lanes = {}
for _, id in ipairs(ids) do
  local jk = job_key(id)
  local key = redis.call('HGET', jk, 'key')
  if key then lanes[key] = true end
  redis.call('DEL', jk, payload_key(id))
end
for key in pairs(lanes) do
  redis.call('DEL', lane_key(key))
end
redis.call('DEL', K_WAITING, K_READY, K_DELAYED)
count('drained', #ids, now)
emit('drained', nil, nil, tostring(#ids))
return #ids
