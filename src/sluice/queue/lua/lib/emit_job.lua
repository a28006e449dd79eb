-- lib/emit_job.lua: log one job's hot-path transition (enqueued, reserved, started,
-- completed) to the event stream, if the queue logs them.
--!include lib/keys.lua
--!include lib/emit.lua

-- They are logged only while the queue's meta `events` is 'all' (Queue.set_events): one
-- XADD per transition was about a tenth of the Redis time per message, and no reader in
-- the product needs them (tests and the Jepsen recorder turn them on). Every other
-- transition (retry, dead, recovered, released, fenced, cancelled, ...) is always logged
-- (lib/emit.lua). Read once per call, by the scripts that include this file.
local EVENTS_ALL = redis.call('HGET', K_META, 'events') == 'all'

local function emit_job(kind, id, key, info)
  if EVENTS_ALL then emit(kind, id, key, info) end
end
