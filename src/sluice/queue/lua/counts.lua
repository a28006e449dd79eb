-- counts.lua: one consistent snapshot of the queue's sizes.
--
-- KEYS: 1 the queue's meta key (see lib/keys.lua; the other keys derive from the prefix).
-- ARGV: 1 prefix, 2 completed-job retention (ms)
-- Returns {waiting, active, delayed, dead, completed, paused, oldest waiting age (ms),
-- ready lanes}.
-- Events: none (it reads only).
--!include lib/keys.lua
--!include lib/now_ms.lua

local now = now_ms()
local delayed = redis.call('ZCARD', K_DELAYED)
local oldest = redis.call('ZRANGE', K_WAITING, 0, 0, 'WITHSCORES')
local age = 0
if #oldest > 0 then
  age = math.max(0, math.floor(now - tonumber(oldest[2])))
end
local paused = 0
if redis.call('HGET', K_META, 'paused') == '1' then paused = 1 end
return {
  redis.call('ZCARD', K_WAITING) - delayed,
  redis.call('ZCARD', K_ACTIVE),
  delayed,
  redis.call('ZCARD', K_DEAD),
  redis.call('ZCOUNT', K_COMPLETED, now - tonumber(ARGV[2]), '+inf'),
  paused,
  age,
  redis.call('ZCARD', K_READY),
}
