-- complete.lua: acknowledge finished jobs, then reserve the next ones for the freed slots.
--
-- Like BullMQ's moveToFinished fetching the next job, finishing and taking work share one
-- round trip: under load a worker makes one call per batch of finished jobs, not two per job.
-- Each completion also records the job's durations and SLA verdict (complete_job,
-- observe_completion). The call also charges the attempts of prefetched jobs that started
-- since the worker's last call: those still running through charge_starts, those that
-- already finished as they are completed (their `pf` mark says the charge is due).
-- Longer than most scripts because it is three calls in one (a replay, the
-- acknowledgements, a reservation as reserve.lua makes it); each step is one helper.
--
-- KEYS: 1 the queue's meta key (see lib/keys.lua; the other keys derive from the prefix).
-- ARGV: 1 prefix, 2 request id (lib/request_key.lua: a repeated call acts once and gets the
--       same reservation back), 3 N to reserve to start (0 = none), 4 P to prefetch,
--       5 worker id, 6 reservation options (as reserve.lua: see lib/reserve_options.lua),
--       7 completion options "retention ms|monitoring|SLA warning ms|SLA critical ms"
--       (retention 0 = delete at once; monitoring 0 off, 1 on, 2 on and report each job's
--       durations back for its log line), 8 prefetched jobs that started, "id:token,..."
--       (parse_refs), 9 completions, "id:token[:hop=epoch ms;hop=...],..." with the hops
--       the handler marked (hop names are letters, digits, '_', '.', '-'), and its notes
--       as "n:name=value" among them (lib/complete_job.lua stores those as n:<name>).
--       Lists travel packed in one argument each (as BullMQ packs its options): the client
--       encodes every argument of every call, and this is the hottest call there is.
-- Returns {lost job ids, reserve result, finished} where lost jobs were not completed
-- because their reservation had expired (another worker owns them now), and finished is
-- a flat list of (id, key, wait ms, processing ms, SLA ms, verdict) per completed job
-- (empty unless monitoring is 2, and empty on a repeated call).
-- Events: completed per job, started (charge_starts), and those of reserve.lua.
--!include lib/keys.lua
--!include lib/now_ms.lua
--!include lib/count.lua
--!include lib/replayed.lua
--!include lib/remember.lua
--!include lib/reserve_options.lua
--!include lib/reservation_record.lua
--!include lib/reservation_from_record.lua
--!include lib/parse_refs.lua
--!include lib/charge_starts.lua
--!include lib/new_tally.lua
--!include lib/payload_key.lua
--!include lib/fmt.lua
--!include lib/complete_job.lua
--!include lib/recover_expired.lua
--!include lib/reserve.lua
--!include lib/flush_monitor.lua
--!include lib/wake.lua

local rid = ARGV[2]
local opts = reserve_options(ARGV[5], ARGV[6])
local earlier = replayed(rid)
if earlier then
  local record = cjson.decode(earlier)
  return {record[1], reservation_from_record(record[2], now_ms(), opts.lease_ms), {}}
end

local retention, monitoring, warn_ms, crit_ms = string.match(ARGV[7],
  '^(%d+)|(%d)|(%d+)|(%d+)$')
retention, monitoring = tonumber(retention), tonumber(monitoring)
warn_ms, crit_ms = tonumber(warn_ms), tonumber(crit_ms)
local tally = nil -- monitoring 0: nothing is observed
if monitoring ~= 0 then tally = new_tally() end
local now = now_ms()
charge_starts(parse_refs(ARGV[8]))
local lost, finished = {}, {}
local report = nil -- monitoring 2: each job's durations go back to the worker
if monitoring == 2 then report = finished end
local done, readied = 0, 0
local settled = {jobs = {}, lanes = {}} -- the jobs completed by this call, the lanes they led
for id, token, hops in string.gmatch(ARGV[9], '([^:,]+):([^:,]+):?([^,]*)') do
  local marks = {}
  for hop, at in string.gmatch(hops, '([^=;]+)=([^;]+)') do
    marks[hop] = at
  end
  local ready = complete_job(id, token, marks, retention, now, tally, warn_ms, crit_ms, report,
    settled)
  if ready then
    done = done + 1
    readied = readied + ready
  else
    lost[#lost + 1] = id
  end
end
count('completed', done, now)
if done > 0 then
  -- Once for every job the call completed: their leases, their lanes' in-flight entries
  -- (before the reservation below takes lanes again), their payloads (a completed job
  -- keeps its timeline for the retention, not its payload) and their `completed` entries.
  local payloads, entries, now_s = {}, {}, fmt(now)
  for n, id in ipairs(settled.jobs) do
    payloads[n] = payload_key(id)
    entries[2 * n - 1], entries[2 * n] = now_s, id
  end
  redis.call('ZREM', K_ACTIVE, unpack(settled.jobs))
  if #settled.lanes > 0 then
    redis.call('HDEL', K_INFLIGHT, unpack(settled.lanes))
  end
  redis.call('DEL', unpack(payloads))
  if retention > 0 then
    redis.call('ZADD', K_COMPLETED, unpack(entries))
    redis.call('ZREMRANGEBYSCORE', K_COMPLETED, '-inf', now - retention)
  end
end

local want, prefetch = tonumber(ARGV[3]), tonumber(ARGV[4])
local taken, refs
if want + prefetch > 0 then
  recover_expired(now, opts.recover, tally)
  taken, refs = reserve(want, prefetch, opts, now)
else
  taken, refs = {'ok', 0}, {}
end
-- One wake for every lane the completions readied (idle workers take what this call's
-- reservation left).
wake(readied)
if tally then flush_monitor(tally, now) end
if done > 0 or #taken > 2 then
  remember(rid, cjson.encode({lost, reservation_record(taken, refs)}))
end
return {lost, taken, finished}
