-- purge_dead.lua: delete dead letters for good: the ids given, or all when none are given.
--
-- KEYS: 1 the queue's meta key (see lib/keys.lua; the other keys derive from the prefix).
-- ARGV: 1 prefix, 2 request id (lib/request_key.lua: a repeated call acts once), then job ids
--       (none = every dead letter)
-- Returns how many were deleted.
-- Events: dead_purged (info: how many), when any were.
--!include lib/keys.lua
--!include lib/job_key.lua
--!include lib/payload_key.lua
--!include lib/emit.lua
--!include lib/replayed.lua
--!include lib/remember.lua

local rid = ARGV[2]
local earlier = replayed(rid)
if earlier then
  return tonumber(earlier)
end
local ids = {}
if #ARGV > 2 then
  for i = 3, #ARGV do ids[#ids + 1] = ARGV[i] end
else
  ids = redis.call('ZRANGE', K_DEAD, 0, -1)
end
local purged = 0
for _, id in ipairs(ids) do
  if redis.call('ZREM', K_DEAD, id) == 1 then
    redis.call('DEL', job_key(id), payload_key(id))
    purged = purged + 1
  end
end
if purged > 0 then emit('dead_purged', nil, nil, tostring(purged)) end
remember(rid, tostring(purged))
return purged
