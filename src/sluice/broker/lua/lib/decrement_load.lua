-- lib/decrement_load.lua: a broker holds one conversation less. A load that reaches 0 is
-- removed, so `loads` lists only brokers holding something.
--!include lib/keys.lua

local function decrement_load(broker)
  if redis.call('HINCRBY', K_LOAD, broker, -1) <= 0 then
    redis.call('HDEL', K_LOAD, broker)
  end
end
