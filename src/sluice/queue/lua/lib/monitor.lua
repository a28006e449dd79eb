-- lib/monitor.lua: hop timing and SLA aggregates, kept by the scripts that end attempts.
-- Included after lib/core.lua. Every process shares these aggregates through Redis, so
-- windows and percentiles are the same whichever process reads them.
--
-- Keys (built from the prefix):
--   mon:10s:<unix/10>  HASH  one 10-second bucket, kept 2 h (1 min, 5 min and 1 h windows);
--                      the evaluator rolls finished minutes up into mon:1m:<unix/60>
--                      (rollup.lua), kept 7 days, for 6 h windows and day charts; the hot
--                      path writes one bucket only
--   mon:total          HASH  all-time counters and fixed histogram buckets (Prometheus)
-- Fields of a window bucket:
--   n completed, ok / warn / crit SLA verdicts, fail failed attempts, retry, dead, enq
--   enqueued, busy / cap busy and available slot-ms reported by worker heartbeats,
--   w:<b> s:<b> p:<b>  log-bucket counts of queue wait, SLA duration, processing, where
--                      b = floor(ln(ms) / ln(1.05)) + 1 (0 below 1 ms): HDR-style buckets
--                      with 5 % relative width, mergeable by adding counts,
--   ws ss ps ls hs rs  sums in ms of queue wait, SLA duration, processing, intake lag,
--                      handling (reserved -> reply generated) and reply (-> sent),
--   hn rn              how many jobs had the handling / reply hops, skew clamped sources.
-- Fields of mon:total: n ok warn crit fail retry dead enq, ws ss ps (ms sums) and
--   hw:<i> hs:<i> hp:<i> counts of the fixed Prometheus buckets below (i = 1.., last = +Inf).

local MON_FINE_S, MON_FINE_TTL = 10, 7200
local LN_BASE = math.log(1.05)
-- Upper bounds (ms) of the Prometheus histogram buckets; the same list as
-- sluice.monitor.metric_names.DURATION_BUCKETS_S (a test keeps them equal).
local PROM_BOUNDS_MS = {5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 15000, 20000,
  30000, 60000, 120000, 300000}

local MONITOR = true    -- scripts set it from their ARGV (monitoring can be switched off)
local WARN_MS, CRIT_MS = 10000, 30000

local Agg = {}   -- window bucket field -> increment, flushed once per script call
local Tot = {}   -- mon:total field -> increment

local function add(t, field, n)
  t[field] = (t[field] or 0) + n
end

local function log_bucket(ms)
  if ms < 1 then return 0 end
  return math.floor(math.log(ms) / LN_BASE) + 1
end

local function prom_bucket(ms)
  for i, bound in ipairs(PROM_BOUNDS_MS) do
    if ms <= bound then return i end
  end
  return #PROM_BOUNDS_MS + 1
end

local function observe(kind, ms)
  add(Agg, kind .. ':' .. log_bucket(ms), 1)
  add(Tot, 'h' .. kind .. ':' .. prom_bucket(ms), 1)
end

-- The hops a completion's durations are computed from, in the order observe_completion
-- takes them (the completing script reads them with the job's other fields in one HMGET).
local COMPLETION_HOPS = {'h:source_created', 'h:received', 'h:enqueued', 'h:reserved',
  'h:reply_generated', 'h:reply_sent', 'h:started'}

-- Record a finished job's durations from its hops `h` (values in COMPLETION_HOPS order,
-- strings or nil). Returns wait, processing, SLA duration (ms) and the verdict. Clock skew
-- between the source and us never makes a duration negative: the source time is clamped
-- to our receive time.
local function observe_completion(h, now, warn_ms, crit_ms)
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
      add(Agg, 'skew', 1)
    end
  end
  local wait = math.max(0, reserved - enqueued)
  local processing = math.max(0, now - reserved)
  local sla = math.max(0, (sent or now) - start)
  local verdict = 'ok'
  if sla > crit_ms then verdict = 'crit' elseif sla > warn_ms then verdict = 'warn' end
  add(Agg, 'n', 1)
  add(Agg, verdict, 1)
  add(Tot, 'n', 1)
  add(Tot, verdict, 1)
  observe('w', wait)
  observe('s', sla)
  observe('p', processing)
  add(Agg, 'ws', wait)
  add(Agg, 'ss', sla)
  add(Agg, 'ps', processing)
  if lag > 0 then add(Agg, 'ls', lag) end
  add(Tot, 'ws', wait)
  add(Tot, 'ss', sla)
  add(Tot, 'ps', processing)
  local handled_until = generated or sent
  if handled_until then
    add(Agg, 'hs', math.max(0, handled_until - reserved))
    add(Agg, 'hn', 1)
  end
  if generated and sent then
    add(Agg, 'rs', math.max(0, sent - generated))
    add(Agg, 'rn', 1)
  end
  return wait, processing, sla, verdict
end

observe_outcome = function(field)
  add(Agg, field, 1)
  add(Tot, field, 1)
end

local function flush_monitor(now)
  if next(Agg) == nil and next(Tot) == nil then return end
  local second = math.floor(now / 1000)
  local fine = PREFIX .. 'mon:10s:' .. math.floor(second / MON_FINE_S)
  for field, n in pairs(Agg) do
    redis.call('HINCRBY', fine, field, math.floor(n + 0.5))
  end
  redis.call('EXPIRE', fine, MON_FINE_TTL)
  local total = PREFIX .. 'mon:total'
  for field, n in pairs(Tot) do
    redis.call('HINCRBY', total, field, math.floor(n + 0.5))
  end
  Agg, Tot = {}, {}
end
