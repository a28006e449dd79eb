-- lib/discard_prefetched.lua: the turn of conversation `key` that sits in a worker's prefetch
-- buffer (reserved, not started: `pf`) goes with the conversation's waiting jobs when they
-- are drained or cancelled, so it never starts.
--!include lib/keys.lua
--!include lib/job_key.lua
--!include lib/payload_key.lua
--!include lib/emit.lua
--!include lib/batch_of.lua

-- The worker learns it from the control channel (or its next heartbeat) and drops it.
-- Returns how many jobs were removed.
local function discard_prefetched(key, reason)
  local leader = redis.call('HGET', K_INFLIGHT, key)
  if not leader or redis.call('HGET', job_key(leader), 'pf') ~= '1' then
    return 0
  end
  local ids = batch_of(leader)
  for _, id in ipairs(ids) do
    redis.call('ZREM', K_ACTIVE, id)
    redis.call('DEL', job_key(id), payload_key(id))
    emit('cancelled', id, key, reason)
  end
  redis.call('HDEL', K_INFLIGHT, key)
  return #ids
end
