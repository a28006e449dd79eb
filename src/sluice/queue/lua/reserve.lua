-- reserve.lua: give a worker up to N jobs for its free slots (and more for its prefetch
-- buffer).
--
-- Recovers expired leases first (so a dead worker's jobs come back even when only idle
-- workers are polling), then reserves one turn per ready lane, earliest deadline first,
-- within the global rate limit and unless the queue is paused: the lane's head job, or with
-- batch > 1 its head and the jobs waiting behind it, except that a job marked solo (a turn
-- of it failed, or its lease expired again) is reserved alone (take_batch in lib/core.lua).
-- The first N turns are to start now (an attempt is charged); up to P more go to the
-- worker's prefetch buffer, marked `pf`, and are charged when they start.
--
-- KEYS: 1 the queue's meta key (see lib/core.lua; the other keys derive from the prefix).
-- ARGV: 1 prefix, 2 request id (lib/request.lua: a repeated call returns the same jobs),
--       3 N to start, 4 P to prefetch, 5 worker id, 6 reservation options (see
--       reserve_options in lib/core.lua: lease, rate limit, rate guard, leases to recover
--       per call, monitoring, batch)
-- Returns {status, retry_after_ms, job fields...}: status 'ok' | 'paused' | 'rate';
-- retry_after is when the rate window frees a start, or the next delayed retry is due.
--!include lib/core.lua
--!include lib/monitor.lua
--!include lib/request.lua

local rid = ARGV[2]
local opts = reserve_options(ARGV[5], ARGV[6])
local earlier = replayed(rid)
if earlier then
  return reservation_from_record(earlier, now_ms(), opts.lease_ms)
end
if not opts.monitor then observe_outcome = nil end
local now = now_ms()
recover_expired(now, opts.recover)
local result, refs = reserve(tonumber(ARGV[3]), tonumber(ARGV[4]), opts, now)
flush_monitor(now)
if #result > 2 then
  remember(rid, reservation_record(result, refs))
end
return result
