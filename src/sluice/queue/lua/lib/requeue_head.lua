-- lib/requeue_head.lua: put a reserved job back at the head of its lane.
--!include lib/keys.lua
--!include lib/job_key.lua
--!include lib/lane_key.lua

-- Its deadline is unchanged. It leaves its batch: a job waiting in a lane never has
-- `batch` or `members` (reserve relies on it). The lane is not made ready here: the caller
-- decides when (ready_again, or a delay).
local function requeue_head(id, key, now)
  local jk = job_key(id)
  redis.call('HSET', jk, 'state', 'waiting')
  redis.call('HDEL', jk, 'token', 'pf', 'batch', 'members')
  redis.call('LPUSH', lane_key(key), id)
  if redis.call('HGET', K_INFLIGHT, key) == id then
    redis.call('HDEL', K_INFLIGHT, key)
  end
  redis.call('ZADD', K_WAITING, tonumber(redis.call('HGET', jk, 'h:enqueued')), id)
end
