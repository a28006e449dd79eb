-- lib/count_enqueued.lua: count the jobs a call enqueued in the monitoring aggregates.
--!include lib/keys.lua
--!include lib/monitor.lua

-- The monitoring `enq` counters (lib/monitor.lua), written directly rather than through a
-- tally: enqueue observes nothing else. They are the enqueue count (always written, with
-- monitoring on or off; the per-second stats hash has no `enqueued`). Once per call,
-- however many jobs it enqueued.
local function count_enqueued(n, now)
  if n == 0 then return end
  redis.call('HINCRBY', PREFIX .. 'mon:total', 'enq', n)
  local fine = PREFIX .. 'mon:10s:' .. math.floor(now / (MON_FINE_S * 1000))
  if redis.call('HINCRBY', fine, 'enq', n) == n then
    redis.call('EXPIRE', fine, MON_FINE_TTL)
  end
end
