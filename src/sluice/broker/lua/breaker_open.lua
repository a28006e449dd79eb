-- breaker_open.lua: open the breaker (calls stop for the cool-off): from closed when a
-- worker's rolling window crossed a threshold, from half-open when a probe failed. Only
-- from the state and generation the caller saw, so a stale verdict (another worker opened
-- it already, or it closed meanwhile) changes nothing.
--
-- KEYS: 1-3 breaker hash, events, breakers (lib/breaker_keys.lua)
-- ARGV: 1 broker name, 2 expected state ('closed' or 'half_open'), 3 expected generation,
--       4 cool-off (ms), 5 reason
-- Returns {opened (1/0), state, generation, cool-off end (epoch ms, Redis clock)}.
-- Events: `breaker` "open: <reason>; cool-off <n> s".
--!include lib/now_ms.lua
--!include lib/breaker_keys.lua
--!include lib/breaker_state.lua
--!include lib/breaker_transition.lua

local broker, expected, expected_gen = ARGV[1], ARGV[2], tonumber(ARGV[3])
local cooloff, reason = tonumber(ARGV[4]), ARGV[5]
local state, gen = breaker_state()
if state ~= expected or gen ~= expected_gen then
  return {0, state, gen, tonumber(redis.call('HGET', K_BREAKER, 'until_ms')) or 0}
end
local now = now_ms()
local untl = now + cooloff
gen = breaker_transition(broker, 'open', gen, now,
  reason .. '; cool-off ' .. string.format('%g', cooloff / 1000) .. ' s',
  {'until_ms', untl, 'inflight', 0, 'probe_ok', 0})
return {1, 'open', gen, untl}
