-- complete.lua: acknowledge finished jobs, then reserve the next ones for the freed slots.
--
-- Like BullMQ's moveToFinished fetching the next job, finishing and taking work share one
-- round trip: under load a worker makes one call per batch of finished jobs, not two per job.
-- Each completion also records the job's durations and SLA verdict (lib/monitor.lua). The
-- call also charges the attempts of prefetched jobs that started since the worker's last
-- call: those still running through charge_starts, those that already finished as they
-- are completed (their `pf` mark says the charge is due).
--
-- KEYS: 1 the queue's meta key (see lib/core.lua; the other keys derive from the prefix).
-- ARGV: 1 prefix, 2 request id (lib/request.lua: a repeated call acts once and gets the
--       same reservation back), 3 N to reserve to start (0 = none), 4 P to prefetch,
--       5 worker id, 6 reservation options (as reserve.lua: see reserve_options in
--       lib/core.lua), 7 completion options "retention ms|monitoring|SLA warning ms|SLA
--       critical ms" (retention 0 = delete at once; monitoring 0 off, 1 on, 2 on and report
--       each job's durations back for its log line), 8 prefetched jobs that started,
--       "id:token,..." (parse_refs), 9 completions, "id:token[:hop=epoch ms;hop=...],..."
--       with the hops the handler marked (hop names are letters, digits, '_', '.', '-').
--       Lists travel packed in one argument each (as BullMQ packs its options): the client
--       encodes every argument of every call, and this is the hottest call there is.
-- Returns {lost job ids, reserve result, finished} where lost jobs were not completed
-- because their reservation had expired (another worker owns them now), and finished is
-- a flat list of (id, key, wait ms, processing ms, SLA ms, verdict) per completed job
-- (empty unless monitoring is 2, and empty on a repeated call).
--!include lib/core.lua
--!include lib/monitor.lua
--!include lib/request.lua

local REPORT = false

-- Complete one reserved job; false when the caller's reservation is no longer valid
-- (its lease expired and the job was handed to another worker). `marks` maps hop names to
-- epoch ms (strings) marked by the handler.
local function complete(id, token, marks, retention_ms, now, finished)
  local jk = job_key(id)
  -- One read for the check, the start charge and the durations (hot path: one call less
  -- per job than reading the hops again after the write).
  local f = redis.call('HMGET', jk, 'key', 'token', 'state', 'pf', 'attempt', 'solo',
    unpack(COMPLETION_HOPS))
  local key, tok, state, pf, attempt, solo = f[1], f[2], f[3], f[4], f[5], f[6]
  if state ~= 'active' or tok ~= token then
    return false
  end
  redis.call('ZREM', K_ACTIVE, id)
  local fields = {'state', 'completed', 'h:completed', fmt(now)}
  if pf == '1' then
    -- A prefetched job that started and finished since the worker's last call: its start
    -- is charged here rather than by charge_starts (the worker leaves it out of the
    -- started list). Its `completed` event tells that it ran.
    fields[5], fields[6] = 'attempt', tonumber(attempt) + 1
  end
  local hops = {f[7], f[8], f[9], f[10], f[11], f[12], f[13]}
  for hop, value in pairs(marks) do
    local name = 'h:' .. hop
    fields[#fields + 1] = name
    fields[#fields + 1] = value
    for i, known in ipairs(COMPLETION_HOPS) do
      if known == name then hops[i] = value end
    end
  end
  -- `token` and `pf` stay: every reader asks for an active job first, and a completed
  -- job never becomes active again (one write less per job).
  redis.call('HSET', jk, unpack(fields))
  if solo then
    redis.call('HDEL', jk, 'solo') -- its turn is over: the mark was only for its retries
  end
  if MONITOR then
    local wait, processing, sla, verdict = observe_completion(hops, now, WARN_MS, CRIT_MS)
    if REPORT then
      local n = #finished
      finished[n + 1], finished[n + 2], finished[n + 3] = id, key, math.floor(wait)
      finished[n + 4], finished[n + 5], finished[n + 6] = math.floor(processing),
        math.floor(sla), verdict
    end
  end
  -- A completed job keeps its timeline for the retention, not its payload.
  redis.call('DEL', payload_key(id))
  if retention_ms > 0 then
    redis.call('PEXPIRE', jk, retention_ms)
    redis.call('ZADD', K_COMPLETED, now, id)
  else
    redis.call('DEL', jk)
  end
  emit('completed', id, key)
  advance_lane(key, id, now)
  return true
end

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
MONITOR = monitoring ~= 0
REPORT = monitoring == 2
if not MONITOR then observe_outcome = nil end
WARN_MS, CRIT_MS = tonumber(warn_ms), tonumber(crit_ms)
local now = now_ms()
charge_starts(parse_refs(ARGV[8]))
local lost, finished = {}, {}
local done = 0
for id, token, hops in string.gmatch(ARGV[9], '([^:,]+):([^:,]+):?([^,]*)') do
  local marks = {}
  for hop, at in string.gmatch(hops, '([^=;]+)=([^;]+)') do
    marks[hop] = at
  end
  if complete(id, token, marks, retention, now, finished) then
    done = done + 1
  else
    lost[#lost + 1] = id
  end
end
count('completed', done, now)
if done > 0 and retention > 0 then
  redis.call('ZREMRANGEBYSCORE', K_COMPLETED, '-inf', now - retention)
end

local want, prefetch = tonumber(ARGV[3]), tonumber(ARGV[4])
local taken, refs
if want + prefetch > 0 then
  recover_expired(now, opts.recover)
  taken, refs = reserve(want, prefetch, opts, now)
else
  taken, refs = {'ok', 0}, {}
end
flush_monitor(now)
if done > 0 or #taken > 2 then
  remember(rid, cjson.encode({lost, reservation_record(taken, refs)}))
end
return {lost, taken, finished}
