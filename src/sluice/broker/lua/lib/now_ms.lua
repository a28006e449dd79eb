-- lib/now_ms.lua: the time in whole milliseconds since the epoch, from the Redis server
-- clock (TIME), so every process agrees on when an assignment was last seen alive.
-- (Unlike the queue's now_ms, no fraction: `seen` scores are whole ms.)

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
