-- pause.lua: stop (ARGV[2] = '1') or restart ('0') new job starts for every worker.
-- Running jobs finish; workers hand back their prefetch buffers when they hear it on the
-- control channel. Resuming wakes idle workers at once. Repeating a call changes nothing.
--
-- KEYS: 1 the queue's meta key (see lib/keys.lua; the other keys derive from the prefix).
-- ARGV: 1 prefix, 2 '1' pause | '0' resume
-- Returns 1 when the state changed, 0 when it already was so.
-- Events: paused / resumed when the state changed; `pause` on the control channel on every
-- pause call.
--!include lib/keys.lua
--!include lib/emit.lua
--!include lib/announce.lua
--!include lib/wake.lua

local was = redis.call('HGET', K_META, 'paused') == '1'
local want = ARGV[2] == '1'
redis.call('HSET', K_META, 'paused', ARGV[2])
if want then
  announce('pause') -- again on a repeat: a worker that missed the first one hears it now
end
if was == want then
  return 0
end
if want then
  emit('paused')
else
  emit('resumed')
  wake(WAKE_MAX)
end
return 1
