-- lib/remember.lua: keep `value` (a string) as this call's answer, for a repeat of the call
-- with the same request id (replayed). See lib/request_key.lua.
--!include lib/request_key.lua

local function remember(rid, value)
  if rid ~= '' then
    redis.call('SET', request_key(rid), value, 'PX', REQUEST_TTL_MS)
  end
end
