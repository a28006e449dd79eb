-- reserve.lua: give a worker up to N jobs for its free slots (and more for its prefetch
-- buffer).
--
-- Recovers expired leases first (so a dead worker's jobs come back even when only idle
-- workers are polling), then reserves one turn per ready lane, earliest deadline first,
-- within the global rate limit and unless the queue is paused: the lane's head job, or with
-- batch > 1 its head and the jobs waiting behind it, except that a job marked solo (a turn
-- of it failed, or its lease expired again) is reserved alone (lib/take_batch.lua).
-- The first N turns are to start now (an attempt is charged); up to P more go to the
-- worker's prefetch buffer, marked `pf`, and are charged when they start.
--
-- KEYS: 1 the queue's meta key (see lib/keys.lua; the other keys derive from the prefix).
-- ARGV: 1 prefix, 2 request id (lib/request_key.lua: a repeated call returns the same
--       jobs), 3 N to start, 4 P to prefetch, 5 worker id, 6 reservation options (see
--       lib/reserve_options.lua: lease, rate limit, rate guard, leases to recover per call,
--       monitoring, batch)
-- Returns {status, retry_after_ms, job fields...}: status 'ok' | 'paused' | 'rate';
-- retry_after is when the rate window frees a start, or the next delayed retry is due.
-- Events: reserved per job; recovered and dead for expired leases (recover_expired);
-- released ('reply lost') for a repeated call's jobs whose lease ran out meanwhile.
--!include lib/now_ms.lua
--!include lib/replayed.lua
--!include lib/remember.lua
--!include lib/reserve_options.lua
--!include lib/reservation_record.lua
--!include lib/reservation_from_record.lua
--!include lib/new_tally.lua
--!include lib/recover_expired.lua
--!include lib/reserve.lua
--!include lib/flush_monitor.lua

local rid = ARGV[2]
local opts = reserve_options(ARGV[5], ARGV[6])
local earlier = replayed(rid)
if earlier then
  return reservation_from_record(earlier, now_ms(), opts.lease_ms)
end
local tally = nil -- monitoring off: dead letters of expired leases are not observed
if opts.monitor then tally = new_tally() end
local now = now_ms()
recover_expired(now, opts.recover, tally)
local result, refs = reserve(tonumber(ARGV[3]), tonumber(ARGV[4]), opts, now)
if tally then flush_monitor(tally, now) end
if #result > 2 then
  remember(rid, reservation_record(result, refs))
end
return result
