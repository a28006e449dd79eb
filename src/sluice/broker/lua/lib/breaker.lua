-- lib/breaker.lua: what every breaker script shares: its keys, reading the state, and
-- writing a transition (the new state, its counter, the event with its reason).
-- KEYS: 1 the broker's breaker hash, 2 the queue's event stream, 3 the set of brokers
--       that have a breaker
--!include lib/now_ms.lua

local K_BREAKER = KEYS[1]
local K_EVENTS = KEYS[2]
local K_BREAKERS = KEYS[3]
local EVENTS_MAXLEN = 10000 -- the queue's cap (queue/lua/lib/emit.lua)

-- The state and its generation; a breaker never written is closed, generation 0.
local function breaker_state()
  local found = redis.call('HMGET', K_BREAKER, 'state', 'gen')
  return found[1] or 'closed', tonumber(found[2]) or 0
end

-- Move to `state` (a new generation), count it, log it as a `breaker` event whose info is
-- "<state>: <reason>". Extra fields (flat name, value list) are written with it.
local function transition(broker, state, gen, now, reason, extra)
  local fields = {'state', state, 'gen', gen + 1, 'since_ms', now, 'reason', reason}
  for i = 1, #extra do fields[#fields + 1] = extra[i] end
  redis.call('HSET', K_BREAKER, unpack(fields))
  redis.call('HINCRBY', K_BREAKER, 't:' .. state, 1)
  redis.call('SADD', K_BREAKERS, broker)
  redis.call('XADD', K_EVENTS, 'MAXLEN', '~', EVENTS_MAXLEN, '*',
    'type', 'breaker', 'job', '', 'key', broker, 'info', state .. ': ' .. reason)
  return gen + 1
end
