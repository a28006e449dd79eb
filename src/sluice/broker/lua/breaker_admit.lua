-- breaker_admit.lua: may a call to the broker go out now? Closed: yes. Open: no (the turn
-- goes to the fallback, counted) until the cool-off ends; then half-open, and up to
-- ARGV[2] probe calls go out at a time (a probe granted longer than ARGV[3] ago is
-- presumed lost with its worker, so its place is given again).
--
-- The times are the Redis server's clock, which may be stepped back (NTP, a failover to a
-- replica whose clock is behind): a cool-off ending more than ARGV[4] from now, or a probe
-- granted "in the future", is brought back to now, so a clock step never holds the
-- breaker open (or a lost probe's place) for longer than a cool-off (or a probe timeout).
--
-- KEYS: 1-3 breaker hash, events, breakers (lib/breaker_keys.lua)
-- ARGV: 1 broker name, 2 probes at a time, 3 probe timeout (ms), 4 cool-off (ms)
-- Returns {verdict, generation, state, ms left of the cool-off}: verdict 'pass' (closed),
-- 'probe' (half-open: report the outcome with the generation) or 'fallback'.
-- Events: `breaker` "half_open: ..." when the cool-off is over.
--!include lib/now_ms.lua
--!include lib/breaker_keys.lua
--!include lib/breaker_state.lua
--!include lib/breaker_transition.lua

local broker, probes, probe_timeout = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local cooloff = tonumber(ARGV[4])
redis.call('SADD', K_BREAKERS, broker) -- listed from its first call (no-op after)
local state, gen = breaker_state()
if state == 'closed' then
  return {'pass', gen, state, 0}
end
local now = now_ms()
if state == 'open' then
  local untl = tonumber(redis.call('HGET', K_BREAKER, 'until_ms')) or 0
  if untl - now > cooloff then -- the clock went back: at most a cool-off from now
    untl = now + cooloff
    redis.call('HSET', K_BREAKER, 'until_ms', untl)
  end
  if now < untl then
    redis.call('HINCRBY', K_BREAKER, 'fallback', 1)
    return {'fallback', gen, state, untl - now}
  end
  gen = breaker_transition(broker, 'half_open', gen, now,
    'cool-off over, letting ' .. probes .. ' probe call(s) through',
    {'inflight', 0, 'probe_ok', 0, 'probe_at_ms', 0})
  state = 'half_open'
end
local found = redis.call('HMGET', K_BREAKER, 'inflight', 'probe_at_ms')
local inflight, probe_at = tonumber(found[1]) or 0, tonumber(found[2]) or 0
if probe_at > now then -- the clock went back: the probe's timeout runs from now
  probe_at = now
  redis.call('HSET', K_BREAKER, 'probe_at_ms', now)
end
if inflight < probes then
  redis.call('HSET', K_BREAKER, 'inflight', inflight + 1, 'probe_at_ms', now)
  return {'probe', gen, state, 0}
end
if now - probe_at >= probe_timeout then
  redis.call('HSET', K_BREAKER, 'probe_at_ms', now) -- a lost probe's place, given again
  return {'probe', gen, state, 0}
end
redis.call('HINCRBY', K_BREAKER, 'fallback', 1)
return {'fallback', gen, state, 0}
