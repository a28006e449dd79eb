-- lib/drop_assignment.lua: remove one assignment and the load unit it held; returns its
-- broker or nil (dropping twice is harmless: the load is decremented once).
--!include lib/keys.lua
--!include lib/decrement_load.lua

local function drop_assignment(key)
  redis.call('ZREM', K_SEEN, key)
  local broker = redis.call('HGET', K_ASSIGN, key)
  if not broker then
    return nil
  end
  redis.call('HDEL', K_ASSIGN, key)
  decrement_load(broker)
  return broker
end
