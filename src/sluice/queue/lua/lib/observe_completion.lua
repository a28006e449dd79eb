-- lib/observe_completion.lua: a finished job's durations and SLA verdict, into a tally.
--!include lib/add.lua
--!include lib/observe.lua

-- The hops a completion's durations are computed from, in the order observe_completion
-- takes them (the completing script reads them with the job's other fields in one HMGET).
local COMPLETION_HOPS = {'h:source_created', 'h:received', 'h:enqueued', 'h:reserved',
  'h:reply_generated', 'h:reply_sent', 'h:started'}

-- `h` holds the job's hops (values in COMPLETION_HOPS order, strings or nil). Returns wait,
-- processing, SLA duration (ms) and the verdict. Clock skew between the source and us never
-- makes a duration negative: the source time is clamped to our receive time.
local function observe_completion(tally, h, now, warn_ms, crit_ms)
  local fine, total = tally.fine, tally.total
  local source, received = tonumber(h[1]), tonumber(h[2])
  -- A job that waited in a worker's prefetch buffer counts as waiting until it started.
  local enqueued, reserved = tonumber(h[3]), tonumber(h[7]) or tonumber(h[4]) or now
  local generated, sent = tonumber(h[5]), tonumber(h[6])
  local start = source or received or enqueued
  local lag = 0
  if source and received then
    lag = received - source
    if lag < 0 then
      start = received
      lag = 0
      add(fine, 'skew', 1)
    end
  end
  local wait = math.max(0, reserved - enqueued)
  local processing = math.max(0, now - reserved)
  local sla = math.max(0, (sent or now) - start)
  local verdict = 'ok'
  if sla > crit_ms then verdict = 'crit' elseif sla > warn_ms then verdict = 'warn' end
  add(fine, 'n', 1)
  add(fine, verdict, 1)
  add(total, 'n', 1)
  add(total, verdict, 1)
  observe(tally, 'w', wait)
  observe(tally, 's', sla)
  observe(tally, 'p', processing)
  add(fine, 'ws', wait)
  add(fine, 'ss', sla)
  add(fine, 'ps', processing)
  if lag > 0 then add(fine, 'ls', lag) end
  add(total, 'ws', wait)
  add(total, 'ss', sla)
  add(total, 'ps', processing)
  local handled_until = generated or sent
  if handled_until then
    add(fine, 'hs', math.max(0, handled_until - reserved))
    add(fine, 'hn', 1)
  end
  if generated and sent then
    add(fine, 'rs', math.max(0, sent - generated))
    add(fine, 'rn', 1)
  end
  return wait, processing, sla, verdict
end
