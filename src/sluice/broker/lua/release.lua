-- release.lua: a conversation ended (resolved): drop its assignment and free the capacity
-- it held on its broker.
--
-- KEYS: 1 assignments HASH conversation key -> broker name
--       2 loads       HASH broker name -> conversations currently assigned
-- ARGV: 1 conversation key
-- Returns the broker the conversation was assigned to, or '' when it had none (releasing
-- twice is harmless: the load is decremented once).
local K_ASSIGN, K_LOAD = KEYS[1], KEYS[2]
local key = ARGV[1]

local broker = redis.call('HGET', K_ASSIGN, key)
if not broker then
  return ''
end
redis.call('HDEL', K_ASSIGN, key)
if redis.call('HINCRBY', K_LOAD, broker, -1) <= 0 then
  redis.call('HDEL', K_LOAD, broker)
end
return broker
