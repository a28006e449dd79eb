-- breaker_probe_ok.lua: a probe call of the half-open breaker ended without failing. A
-- success (ARGV[5] = 1) counts toward closing: with ARGV[3] of them in this half-open
-- period the breaker closes (calls flow again). A call that said nothing about the
-- endpoint (ARGV[5] = 0: no model call was made) only gives its probe slot back.
--
-- KEYS: 1-3 breaker hash, events, breakers (lib/breaker_keys.lua)
-- ARGV: 1 broker name, 2 generation the probe was granted in, 3 successes needed,
--       4 the probe's latency (ms), for the reason, 5 counted (1) or not (0)
-- Returns {closed (1/0), state, generation}.
-- Events: `breaker` "closed: <n> probe call(s) succeeded ..." when it closes.
--!include lib/now_ms.lua
--!include lib/breaker_keys.lua
--!include lib/breaker_state.lua
--!include lib/breaker_transition.lua

local broker, probe_gen, needed = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local state, gen = breaker_state()
if state ~= 'half_open' or gen ~= probe_gen then
  return {0, state, gen}
end
local inflight = tonumber(redis.call('HGET', K_BREAKER, 'inflight')) or 0
redis.call('HSET', K_BREAKER, 'inflight', math.max(0, inflight - 1))
if ARGV[5] ~= '1' then
  return {0, state, gen}
end
local ok = redis.call('HINCRBY', K_BREAKER, 'probe_ok', 1)
if ok < needed then
  return {0, state, gen}
end
gen = breaker_transition(broker, 'closed', gen, now_ms(),
  ok .. ' probe call(s) succeeded (the last in ' .. ARGV[4] .. ' ms)',
  {'inflight', 0, 'probe_ok', 0})
return {1, 'closed', gen}
