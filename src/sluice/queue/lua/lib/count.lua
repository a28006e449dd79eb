-- lib/count.lua: the per-second counters (stats:<unix second> HASH field -> count).
--!include lib/keys.lua

local STATS_TTL_S = 7200     -- per-second counters are kept two hours

local function count(field, n, now)
  if n == 0 then return end
  local k = PREFIX .. 'stats:' .. math.floor(now / 1000)
  -- The first increment of a field (result == n) sets the TTL: every key gets one when
  -- it is created, without an EXPIRE on every call.
  if redis.call('HINCRBY', k, field, n) == n then
    redis.call('EXPIRE', k, STATS_TTL_S)
  end
end
