-- lib/replayed.lua: the stored answer of an earlier call with this request id, or nil
-- (first time, or no id). See lib/request_key.lua.
--!include lib/request_key.lua

local function replayed(rid)
  if rid == '' then return nil end
  local stored = redis.call('GET', request_key(rid))
  if stored then return stored end
  return nil
end
