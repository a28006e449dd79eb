-- lib/monitor.lua: where the monitoring aggregates live and how they are laid out (the
-- constants of the helpers that keep them: new_tally, observe_completion, observe_outcome,
-- flush_monitor). Every process shares these aggregates through Redis, so windows and
-- percentiles are the same whichever process reads them.
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
--                      b = floor(ln(ms) / ln(1.05)) + 1 (0 below 1 ms; log_bucket): HDR-style
--                      buckets with 5 % relative width, mergeable by adding counts,
--   ws ss ps ls hs rs  sums in ms of queue wait, SLA duration, processing, intake lag,
--                      handling (reserved -> reply generated) and reply (-> sent),
--   hn rn              how many jobs had the handling / reply hops, skew clamped sources.
-- Fields of mon:total: n ok warn crit fail retry dead enq, ws ss ps (ms sums) and
--   hw:<i> hs:<i> hp:<i> counts of the fixed Prometheus buckets below (i = 1.., last = +Inf;
--   prom_bucket).
-- (enqueue.lua counts `enq` itself, in the same keys, without a tally.)

local MON_FINE_S, MON_FINE_TTL = 10, 7200
local LN_BASE = math.log(1.05)
-- Upper bounds (ms) of the Prometheus histogram buckets; the same list as
-- sluice.monitor.metric_names.DURATION_BUCKETS_S (a test keeps them equal).
local PROM_BOUNDS_MS = {5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 15000, 20000,
  30000, 60000, 120000, 300000}
