-- lib/fair_note.lua: count a fairness decision, and log it as an event now and then.
--!include lib/keys.lua
--!include lib/fair_keys.lua
--!include lib/emit.lua

local FAIR_NOTE_MS = 10000 -- at most one event per account and kind in this interval

-- kind: 'capped' (a lane held back: `why` is 'c' concurrency or 'r' rate) or 'lent' (an
-- account over its cap given an idle slot, why 'l'). Every decision is counted in
-- fair:stats (what /metrics and the dashboard show); the event, with its reason in `info`,
-- is written at most once per FAIR_NOTE_MS per account and kind, so one account's flood of
-- held-back lanes cannot flood the event stream.
local function fair_note(kind, why, acct, key, info)
  redis.call('HINCRBY', K_FAIR_STATS, why .. ':' .. acct, 1)
  redis.call('HINCRBY', K_FAIR_STATS, why, 1)
  if redis.call('SET', K_FAIR_NOTE .. acct .. ':' .. why, '1', 'NX', 'PX', FAIR_NOTE_MS) then
    emit(kind, nil, key, acct .. '|' .. info)
  end
end
