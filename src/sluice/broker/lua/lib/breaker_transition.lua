-- lib/breaker_transition.lua: move the breaker to `state` (a new generation), count it,
-- and log it as a `breaker` event whose info is "<state>: <reason>" (key: the broker).
-- `extra` is a flat list of more field, value pairs written with it. Returns the new
-- generation.
--!include lib/breaker_keys.lua

local function breaker_transition(broker, state, gen, now, reason, extra)
  local fields = {'state', state, 'gen', gen + 1, 'since_ms', now, 'reason', reason}
  for i = 1, #extra do fields[#fields + 1] = extra[i] end
  redis.call('HSET', K_BREAKER, unpack(fields))
  redis.call('HINCRBY', K_BREAKER, 't:' .. state, 1)
  redis.call('SADD', K_BREAKERS, broker)
  redis.call('XADD', K_EVENTS, 'MAXLEN', '~', BREAKER_EVENTS_MAXLEN, '*',
    'type', 'breaker', 'job', '', 'key', broker, 'info', state .. ': ' .. reason)
  return gen + 1
end
