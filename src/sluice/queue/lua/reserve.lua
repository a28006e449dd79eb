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
--       3 N to start, 4 P to prefetch, 5 lease (ms), 6 worker id, 7 default rate limit
--       (jobs/s, 0 = unlimited; the live value in meta.rate_limit wins), 8 rate guard (ms
--       added to the 1 s window to absorb dispatch jitter), 9 max leases to recover in this
--       call, 10 monitoring (1/0: dead letters from expired leases are counted), 11 batch:
--       the most jobs of one conversation to reserve together (1 = one at a time; a job
--       marked solo is always reserved alone)
-- Returns {status, retry_after_ms, job fields...}: status 'ok' | 'paused' | 'rate';
-- retry_after is when the rate window frees a start, or the next delayed retry is due.
--!include lib/core.lua
--!include lib/monitor.lua
--!include lib/request.lua

local rid = ARGV[2]
local earlier = replayed(rid)
if earlier then
  return reservation_from_record(earlier, now_ms(), tonumber(ARGV[5]))
end
if ARGV[10] ~= '1' then observe_outcome = nil end
local now = now_ms()
recover_expired(now, tonumber(ARGV[9]))
local result, refs = reserve(tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6],
  tonumber(ARGV[7]), tonumber(ARGV[8]), now, tonumber(ARGV[11]))
flush_monitor(now)
if #result > 2 then
  remember(rid, reservation_record(result, refs))
end
return result
