-- lib/breaker_state.lua: the breaker's state and generation; a breaker never written is
-- closed, generation 0.
--!include lib/breaker_keys.lua

local function breaker_state()
  local found = redis.call('HMGET', K_BREAKER, 'state', 'gen')
  return found[1] or 'closed', tonumber(found[2]) or 0
end
