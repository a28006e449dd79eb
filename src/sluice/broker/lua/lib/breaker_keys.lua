-- lib/breaker_keys.lua: the keys every breaker script takes, KEYS 1-3 in this order.
--
--   1 breaker  HASH the broker's breaker: state (closed / open / half_open), gen (the
--              generation, one more at each transition), since_ms, until_ms (end of the
--              cool-off, Redis clock), reason, inflight and probe_at_ms (half-open probe
--              slots), probe_ok, t:<state> (transitions into each state), fallback
--   2 events   STREAM the queue's event stream (queue/lua/lib/emit.lua caps it the same)
--   3 breakers SET the brokers that have a breaker (readers need no broker list)
--
-- These are constants: no script or helper assigns them.
local K_BREAKER, K_EVENTS, K_BREAKERS = KEYS[1], KEYS[2], KEYS[3]
local BREAKER_EVENTS_MAXLEN = 10000
