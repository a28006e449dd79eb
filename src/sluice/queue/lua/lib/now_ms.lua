-- lib/now_ms.lua: the time, from the Redis server clock.
--
-- Times are milliseconds since the epoch from TIME, so every worker process on every host
-- agrees on one clock for leases, deadlines and the rate limit. Each call is a Redis
-- command: a script reads the clock once and passes `now` on.

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end
