-- lib/fair_keys.lua: the keys of tenant fairness (docs/fairness.md), beside the queue's.
--!include lib/keys.lua
--
-- A group is an account, what a conversation key names before its first ':' (the intake's
-- keys are "<account>:<conversation>", lib/fair_account.lua), or an inbox,
-- "<account>/<inbox>" (lib/fair_inbox.lua). Per group (written <account> below), in the
-- queue's hash tag:
--   fair:run:<account>   SET   its conversations reserved (a superset of those in
--                              `inflight`, made exact by fair_heal when it matters)
--   fair:park:<account>  ZSET  conversation -> deadline: its ready lanes held back while
--                              it was at a cap (out of `ready`, deadline kept)
--   fair:tat:<account>   STRING its start-rate state (GCRA theoretical arrival time, ms)
--   fair:note:<account>:<kind> STRING set for FAIR_NOTE_MS after an event, so a flood
--                              writes one event per account and kind per interval
-- And for the queue:
--   fair:parked  ZSET  group -> earliest deadline it holds back (fair_select's index)
--   fair:stats   HASH  <kind>:<account> and <kind> -> lanes held back ('c' at the
--                      concurrency cap, 'r' at the rate cap) or lent idle slots ('l')
-- These are constants: no script or helper assigns them.

local K_FAIR_PARKED, K_FAIR_STATS = PREFIX .. 'fair:parked', PREFIX .. 'fair:stats'
local K_FAIR_RUN, K_FAIR_PARK = PREFIX .. 'fair:run:', PREFIX .. 'fair:park:'
local K_FAIR_TAT, K_FAIR_NOTE = PREFIX .. 'fair:tat:', PREFIX .. 'fair:note:'
