-- reserve.lua: give a worker up to N jobs for its free slots.
--
-- Recovers expired leases first (so a dead worker's jobs come back even when only idle
-- workers are polling), then reserves one turn per ready lane, earliest deadline first,
-- within the global rate limit and unless the queue is paused: the lane's head job, or with
-- batch > 1 its head and the jobs waiting behind it, except that a job marked solo (a turn
-- of it failed, or its lease expired again) is reserved alone (take_batch in lib/core.lua).
--
-- KEYS: 1 the queue's meta key (see lib/core.lua; the other keys derive from the prefix).
-- ARGV: 1 prefix, 2 N wanted, 3 lease (ms), 4 worker id, 5 default rate limit (jobs/s,
--       0 = unlimited; the live value in meta.rate_limit wins), 6 rate guard (ms added to
--       the 1 s window to absorb dispatch jitter), 7 max leases to recover in this call,
--       8 monitoring (1/0: dead letters from expired leases are counted), 9 batch: the
--       most jobs of one conversation to reserve together (1 = one at a time; a job marked
--       solo is always reserved alone)
-- Returns {status, retry_after_ms, job fields...}: status 'ok' | 'paused' | 'rate';
-- retry_after is when the rate window frees a start, or the next delayed retry is due.
--!include lib/core.lua
--!include lib/monitor.lua

if ARGV[8] ~= '1' then observe_outcome = nil end
local now = now_ms()
recover_expired(now, tonumber(ARGV[7]))
local result = reserve(tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5]),
  tonumber(ARGV[6]), now, tonumber(ARGV[9]))
flush_monitor(now)
return result
