-- complete.lua: acknowledge finished jobs, then reserve the next ones for the freed slots.
--
-- Like BullMQ's moveToFinished fetching the next job, finishing and taking work share one
-- round trip: under load a worker makes one call per batch of finished jobs, not two per job.
-- Each completion also records the job's durations and SLA verdict (lib/monitor.lua). The
-- call also charges the attempts of prefetched jobs that started since the worker's last
-- call (charge_starts).
--
-- KEYS: 1 the queue's meta key (see lib/core.lua; the other keys derive from the prefix).
-- ARGV: 1 prefix, 2 request id (lib/request.lua: a repeated call acts once and gets the
--       same reservation back), 3 completed-job retention (ms, 0 = delete at once), 4 N to
--       reserve to start (0 = none), 5 P to prefetch, 6 lease (ms), 7 worker id, 8 default
--       rate limit, 9 rate guard (ms), 10 max leases to recover, 11 monitoring (0 off, 1 on,
--       2 on and report each job's durations back for its log line), 12 SLA warning (ms),
--       13 SLA critical (ms), 14 batch (as reserve.lua: a job marked solo is reserved
--       alone), 15 s, then s x (job id, token) of prefetched jobs that started, then the
--       count of completions, then per completion: job id, reservation token, m, then
--       m x (hop name, epoch ms) marked by the handler
-- Returns {lost job ids, reserve result, finished} where lost jobs were not completed
-- because their reservation had expired (another worker owns them now), and finished is
-- a flat list of (id, key, wait ms, processing ms, SLA ms, verdict) per completed job
-- (empty unless monitoring is 2, and empty on a repeated call).
--!include lib/core.lua
--!include lib/monitor.lua
--!include lib/request.lua

local REPORT = false

-- Complete one reserved job; false when the caller's reservation is no longer valid
-- (its lease expired and the job was handed to another worker). Marks are hop name /
-- time pairs read from ARGV starting at `at`.
local function complete(id, token, at, nmarks, retention_ms, now, finished)
  local jk = job_key(id)
  local key, tok, state = unpack(redis.call('HMGET', jk, 'key', 'token', 'state'))
  if state ~= 'active' or tok ~= token then
    return false
  end
  redis.call('ZREM', K_ACTIVE, id)
  local fields = {'state', 'completed', 'h:completed', fmt(now)}
  for m = 0, nmarks - 1 do
    fields[#fields + 1] = 'h:' .. ARGV[at + 2 * m]
    fields[#fields + 1] = ARGV[at + 2 * m + 1]
  end
  redis.call('HSET', jk, unpack(fields))
  redis.call('HDEL', jk, 'token', 'solo', 'pf')
  if MONITOR then
    local wait, processing, sla, verdict = observe_completion(jk, now, WARN_MS, CRIT_MS)
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
local earlier = replayed(rid)
if earlier then
  local record = cjson.decode(earlier)
  return {record[1], reservation_from_record(record[2], now_ms(), tonumber(ARGV[6])), {}}
end

MONITOR = ARGV[11] ~= '0'
REPORT = ARGV[11] == '2'
if not MONITOR then observe_outcome = nil end
WARN_MS, CRIT_MS = tonumber(ARGV[12]), tonumber(ARGV[13])
local now = now_ms()
local retention = tonumber(ARGV[3])
local at = 15
local nstarted = tonumber(ARGV[at])
charge_starts(refs_at(at + 1, nstarted))
at = at + 1 + 2 * nstarted
local n = tonumber(ARGV[at])
at = at + 1
local lost, finished = {}, {}
local done = 0
for _ = 1, n do
  local id, token, nmarks = ARGV[at], ARGV[at + 1], tonumber(ARGV[at + 2])
  if complete(id, token, at + 3, nmarks, retention, now, finished) then
    done = done + 1
  else
    lost[#lost + 1] = id
  end
  at = at + 3 + 2 * nmarks
end
count('completed', done, now)
if done > 0 and retention > 0 then
  redis.call('ZREMRANGEBYSCORE', K_COMPLETED, '-inf', now - retention)
end

local want, prefetch = tonumber(ARGV[4]), tonumber(ARGV[5])
local taken, refs
if want + prefetch > 0 then
  recover_expired(now, tonumber(ARGV[10]))
  taken, refs = reserve(want, prefetch, tonumber(ARGV[6]), ARGV[7], tonumber(ARGV[8]),
    tonumber(ARGV[9]), now, tonumber(ARGV[14]))
else
  taken, refs = {'ok', 0}, {}
end
flush_monitor(now)
if done > 0 or #taken > 2 then
  remember(rid, cjson.encode({lost, reservation_record(taken, refs)}))
end
return {lost, taken, finished}
