-- lib/flush_monitor.lua: write a call's tally to the monitoring aggregates, once, at the
-- end of the call (lib/monitor.lua for the keys).
--!include lib/keys.lua
--!include lib/monitor.lua

local function flush_monitor(tally, now)
  local fine, total = tally.fine, tally.total
  if next(fine) == nil and next(total) == nil then return end
  local second = math.floor(now / 1000)
  local fine_key = PREFIX .. 'mon:10s:' .. math.floor(second / MON_FINE_S)
  for field, n in pairs(fine) do
    redis.call('HINCRBY', fine_key, field, math.floor(n + 0.5))
  end
  redis.call('EXPIRE', fine_key, MON_FINE_TTL)
  local total_key = PREFIX .. 'mon:total'
  for field, n in pairs(total) do
    redis.call('HINCRBY', total_key, field, math.floor(n + 0.5))
  end
end
