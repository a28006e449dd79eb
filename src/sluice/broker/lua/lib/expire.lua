-- lib/expire.lua: included at the top of assign.lua, release.lua and loads.lua (textually,
-- by sluice.broker.assignment, so each script stays one atomic call).
--
-- An assignment counts toward its broker's load only while its conversation is alive: it
-- was assigned (or confirmed sticky) within the idle TTL, or the conversation's state
-- (conv:<key> or conv:<key>:history, which expire after the same TTL of silence) still
-- exists. A conversation that is never resolved therefore stops holding its broker's
-- capacity when its state expires, instead of for ever.
--
-- KEYS 1-4 are the same in every script that includes this file:
--   1 assignments HASH conversation key -> broker name
--   2 loads       HASH broker name -> conversations currently assigned
--   3 seen        ZSET conversation key -> when (Redis clock, ms) its assignment was last
--                 known alive: the index that finds idle ones without scanning them all
--   4 adopt       STRING HSCAN cursor over assignments, for those written before `seen`
--                 existed (an upgrade): they are indexed a page per call until none is missing
local K_ASSIGN, K_LOAD, K_SEEN, K_ADOPT = KEYS[1], KEYS[2], KEYS[3], KEYS[4]

local EXPIRE_MAX = 100  -- idle assignments examined per call: bounded work, amortized

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Remove one assignment and the load unit it held; returns its broker or nil.
local function drop_assignment(key)
  redis.call('ZREM', K_SEEN, key)
  local broker = redis.call('HGET', K_ASSIGN, key)
  if not broker then
    return nil
  end
  redis.call('HDEL', K_ASSIGN, key)
  if redis.call('HINCRBY', K_LOAD, broker, -1) <= 0 then
    redis.call('HDEL', K_LOAD, broker)
  end
  return broker
end

-- Forget assignments idle for more than ttl ms whose conversation state is gone; returns
-- how many were forgotten. A candidate whose state still exists is looked at again when
-- that state would expire (its remaining PTTL from now).
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
