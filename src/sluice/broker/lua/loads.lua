-- loads.lua: the loads of every broker, after forgetting idle assignments
-- (lib/expire_idle.lua), so a reader never sees capacity held by conversations that went
-- quiet.
--
-- KEYS: 1-4 assignments, loads, seen, adopt: see lib/keys.lua
-- ARGV: 1 conversation state key prefix ('<queue prefix>conv:'), 2 idle TTL (ms)
-- Returns HGETALL of loads (broker name, load, ...).
-- Events: none.
--!include lib/keys.lua
--!include lib/now_ms.lua
--!include lib/expire_idle.lua

expire_idle(ARGV[1], tonumber(ARGV[2]), now_ms())
return redis.call('HGETALL', K_LOAD)
