-- lib/complete_job.lua: acknowledge one finished job (complete.lua, once per job).
--!include lib/keys.lua
--!include lib/job_key.lua
--!include lib/fmt.lua
--!include lib/emit_job.lua
--!include lib/advance_lane.lua
--!include lib/make_ready.lua
--!include lib/observe_completion.lua

-- Returns false when the caller's reservation is no longer valid (its lease expired and
-- the job was handed to another worker); otherwise 1 if its lane's next job became ready
-- (the caller wakes a worker for it, once for all its jobs: wake) and 0 if not. `marks` maps hop names to epoch ms (strings) marked
-- by the handler. A completed job keeps its hash for `retention_ms` (0 = deleted at once).
-- With a `tally` (monitoring on) its durations and SLA verdict are observed, judged by
-- warn_ms / crit_ms; with `finished` as well they are appended to it for the worker's log
-- line (id, key, wait, processing, SLA ms, verdict). A completed job's id is appended to
-- `settled.jobs`, and the lane of a job that led its turn to `settled.lanes`: the caller
-- writes what they need once for all of them (each job's lease out of `active`, its payload
-- deleted, its entry in `completed`; each lane out of `inflight`).
local function complete_job(id, token, marks, retention_ms, now, tally, warn_ms, crit_ms,
    finished, settled)
  local jk = job_key(id)
  -- One read for the check, the start charge and the durations (hot path: one call less
  -- per job than reading the hops again after the write).
  local f = redis.call('HMGET', jk, 'key', 'token', 'state', 'pf', 'attempt', 'solo', 'tp',
    'batch', unpack(COMPLETION_HOPS))
  local key, tok, state, pf, attempt, solo, tp = f[1], f[2], f[3], f[4], f[5], f[6], f[7]
  -- Without a `batch` link the job led its turn: it is its lane's in-flight job (an active
  -- job with a valid token: no one else took the lane since).
  local leads = not f[8]
  if state ~= 'active' or tok ~= token then
    return false
  end
  settled.jobs[#settled.jobs + 1] = id
  local fields = {'state', 'completed', 'h:completed', fmt(now)}
  if pf == '1' then
    -- A prefetched job that started and finished since the worker's last call: its start
    -- is charged here rather than by charge_starts (the worker leaves it out of the
    -- started list). Its `completed` event tells that it ran.
    fields[5], fields[6] = 'attempt', tonumber(attempt) + 1
  end
  local hops = {f[9], f[10], f[11], f[12], f[13], f[14], f[15]}
  for hop, value in pairs(marks) do
    if string.sub(hop, 1, 2) == 'n:' then
      -- A note (Job.note, e.g. n:broker): stored as it is, never a duration's hop.
      fields[#fields + 1] = hop
      fields[#fields + 1] = value
    else
      local name = 'h:' .. hop
      fields[#fields + 1] = name
      fields[#fields + 1] = value
      for i, known in ipairs(COMPLETION_HOPS) do
        if known == name then hops[i] = value end
      end
    end
  end
  -- `token` and `pf` stay: every reader asks for an active job first, and a completed
  -- job never becomes active again (one write less per job).
  redis.call('HSET', jk, unpack(fields))
  if solo or tp then
    -- Its turn is over: `solo` was only for its retries, and `tp` (its trace context, set
    -- while tracing is on) only for the runs that join its trace; a completed job keeps
    -- its timeline at the size it has without tracing.
    redis.call('HDEL', jk, 'solo', 'tp')
  end
  if tally then
    local wait, processing, sla, verdict = observe_completion(tally, hops, now, warn_ms, crit_ms)
    if finished then
      local n = #finished
      finished[n + 1], finished[n + 2], finished[n + 3] = id, key, math.floor(wait)
      finished[n + 4], finished[n + 5], finished[n + 6] = math.floor(processing),
        math.floor(sla), verdict
    end
  end
  -- A completed job keeps its timeline for the retention, not its payload (the caller
  -- deletes that).
  if retention_ms > 0 then
    redis.call('PEXPIRE', jk, retention_ms)
  else
    redis.call('DEL', jk)
  end
  emit_job('completed', id, key)
  local ready
  if leads then
    -- Its lane's in-flight entry is this job's: the caller clears it (one HDEL for the call's
    -- lanes, before anything else reads `inflight`), and its next head becomes ready now.
    settled.lanes[#settled.lanes + 1] = key
    ready = make_ready(key, now)
  else
    ready = advance_lane(key, id, now)
  end
  if ready then return 1 end
  return 0
end
