-- lib/entomb.lua: move a job to the dead-letter set.
--!include lib/keys.lua
--!include lib/job_key.lua
--!include lib/payload_key.lua
--!include lib/fmt.lua
--!include lib/count.lua
--!include lib/emit.lua
--!include lib/observe_outcome.lua

-- Its lane does not move on here: the caller buries all it has to, then calls
-- advance_lane once. The `solo` mark and its batch links go: a dead letter retried by an
-- operator queues as a new arrival. `tally` (new_tally; nil = monitoring off) counts it.
local function entomb(id, key, err, now, tally)
  local jk = job_key(id)
  redis.call('HSET', jk, 'state', 'dead', 'err', err, 'h:dead', fmt(now))
  redis.call('HDEL', jk, 'token', 'solo', 'pf', 'batch', 'members')
  redis.call('PERSIST', jk)
  redis.call('PERSIST', payload_key(id))
  redis.call('ZADD', K_DEAD, now, id)
  count('dead', 1, now)
  if tally then observe_outcome(tally, 'dead') end
  emit('dead', id, key, err)
end
