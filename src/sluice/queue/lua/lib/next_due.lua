-- lib/next_due.lua: how long an idle worker may block before something is due (a delayed
-- retry), in ms: 0 = nothing is.
--!include lib/keys.lua

local function next_due(now)
  local first = redis.call('ZRANGE', K_DELAYED, 0, 0, 'WITHSCORES')
  if #first == 0 then return 0 end
  return math.max(1, math.ceil(tonumber(first[2]) - now))
end
