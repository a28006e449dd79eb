-- rollup.lua: fold the six 10-second monitoring buckets of one finished minute into its
-- 1-minute bucket (kept 7 days). Idempotent: a minute is rolled up once, whoever asks.
--
-- KEYS: 1 the queue's meta key (see lib/keys.lua; the other keys derive from the prefix).
-- ARGV: 1 prefix, 2 the minute (unix seconds / 60)
-- Returns 1 when the minute was rolled up now, 0 when it already had been.
-- Events: none.
--!include lib/keys.lua

local minute = tonumber(ARGV[2])
local coarse = PREFIX .. 'mon:1m:' .. minute
if redis.call('HSETNX', coarse, '_rolled', 1) == 0 then
  return 0
end
for i = 0, 5 do
  local fine = PREFIX .. 'mon:10s:' .. (minute * 6 + i)
  local flat = redis.call('HGETALL', fine)
  for f = 1, #flat, 2 do
    redis.call('HINCRBY', coarse, flat[f], flat[f + 1])
  end
end
redis.call('EXPIRE', coarse, 7 * 86400)
return 1
