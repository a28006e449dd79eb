-- lib/keys.lua: the queue's key names, which every script needs.
--
-- KEYS[1] is the queue's `meta` key for every script: it routes the call to the queue's
-- cluster slot. The other keys are built from the prefix in ARGV[1] (as BullMQ builds its
-- per-job keys): they share the queue's hash tag, so they live in that same slot, and a
-- call sends one key instead of twelve (measurably cheaper per job). The queue's keys:
--   ready      ZSET  conversation key -> deadline (ms): lanes whose head job may start
--   delayed    ZSET  conversation key -> ms at which its head (a retry) may start again
--   inflight   HASH  conversation key -> id of the one job (batch leader) of that lane running
--   active     ZSET  job id -> lease expiry (ms)
--   waiting    ZSET  job id -> enqueued at (ms): every job still sitting in a lane
--   dead       ZSET  job id -> dead-lettered at (ms)
--   completed  ZSET  job id -> completed at (ms), trimmed to the retention
--   meta       HASH  paused, rate_limit, concurrency, profile (live settings for all workers)
--   rate       ZSET  job starts of the last second (the global sliding-window limit)
--   wake       LIST  wake-up tokens for idle workers blocked in BLPOP
--   events     STREAM capped log of every transition
--   seq        STRING job id counter
--   control    CHANNEL pause / resume / drain / cancel / rate, so workers act on their
--              prefetch buffers at once (PUBLISH, nothing stored)
-- ARGV[1] is always the key prefix "sluice:{queue}:". Per-job and per-lane keys are built
-- from it (job:<id> by job_key, payload:<id> by payload_key, lane:<key> by lane_key,
-- dedupe:<message id>, req:<request id> by request_key, stats:<unix second> by count,
-- mon:... as lib/monitor.lua lays them out); the prefix carries the queue's hash tag, so
-- every key lives in the same cluster slot.
--
-- These are constants: no script or helper assigns them.

local PREFIX = ARGV[1]
local K_READY, K_DELAYED = PREFIX .. 'ready', PREFIX .. 'delayed'
local K_INFLIGHT, K_ACTIVE = PREFIX .. 'inflight', PREFIX .. 'active'
local K_WAITING, K_DEAD, K_COMPLETED = PREFIX .. 'waiting', PREFIX .. 'dead', PREFIX .. 'completed'
local K_META, K_RATE, K_WAKE = KEYS[1], PREFIX .. 'rate', PREFIX .. 'wake'
local K_EVENTS, K_SEQ = PREFIX .. 'events', PREFIX .. 'seq'
local K_CONTROL = PREFIX .. 'control'
