-- lib/expire_idle.lua: forget assignments whose conversation went quiet (lib/keys.lua says
-- when one counts as alive), so loads count live conversations only.
--!include lib/keys.lua
--!include lib/drop_assignment.lua

local EXPIRE_MAX = 100  -- idle assignments examined per call: bounded work, amortized

-- Forget assignments idle for more than ttl ms whose conversation state (under
-- `conv_prefix`) is gone; returns how many were forgotten. A candidate whose state still
-- exists is looked at again when that state would expire (its remaining PTTL from now).
-- Assignments not indexed in `seen` yet (written before it existed) are adopted first, a
-- page per call.
local function expire_idle(conv_prefix, ttl, now)
  if redis.call('ZCARD', K_SEEN) < redis.call('HLEN', K_ASSIGN) then
    local page = redis.call('HSCAN', K_ASSIGN, redis.call('GET', K_ADOPT) or '0',
      'COUNT', EXPIRE_MAX)
    for i = 1, #page[2], 2 do
      redis.call('ZADD', K_SEEN, 'NX', now, page[2][i])
    end
    redis.call('SET', K_ADOPT, page[1])
  end
  local forgotten = 0
  local idle = redis.call('ZRANGEBYSCORE', K_SEEN, '-inf', now - ttl, 'LIMIT', 0, EXPIRE_MAX)
  for _, key in ipairs(idle) do
    local remaining = -2
    for _, state in ipairs({conv_prefix .. key, conv_prefix .. key .. ':history'}) do
      local pttl = redis.call('PTTL', state)
      if pttl == -1 then
        remaining = ttl  -- state without expiry: alive, look again after a full TTL
      elseif pttl > remaining then
        remaining = pttl
      end
    end
    if remaining > 0 then
      redis.call('ZADD', K_SEEN, now - ttl + remaining, key)
    elseif drop_assignment(key) then
      forgotten = forgotten + 1
    end
  end
  return forgotten
end
