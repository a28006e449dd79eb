-- drain.lua: remove every waiting and delayed job, and every turn sitting unstarted in a
-- worker's prefetch buffer (running ones finish). O(waiting + active jobs): an operator's
-- emergency action, not a hot path. Workers hear it on the control channel and drop their
-- buffers at once.
--
-- KEYS: 1 the queue's meta key (see lib/keys.lua; the other keys derive from the prefix).
-- ARGV: 1 prefix, 2 request id (lib/request_key.lua: a repeated call acts once)
-- Returns how many jobs were removed.
-- Events: cancelled per prefetched job removed, then one drained (info: how many);
-- `drain` on the control channel.
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
local removed = #ids
for _, id in ipairs(redis.call('ZRANGE', K_ACTIVE, 0, -1)) do
  local key, pf = unpack(redis.call('HMGET', job_key(id), 'key', 'pf'))
  if pf == '1' and key then
    removed = removed + discard_prefetched(key, 'drained')
  end
end
redis.call('DEL', K_WAITING, K_READY, K_DELAYED)
count('drained', removed, now)
emit('drained', nil, nil, tostring(removed))
announce('drain')
remember(rid, tostring(removed))
return removed
