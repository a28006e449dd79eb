-- lib/make_ready.lua: a lane's head becomes eligible now, with a fresh deadline.
--!include lib/keys.lua
--!include lib/job_key.lua
--!include lib/lane_key.lua
--!include lib/fmt.lua

-- The head's deadline is its class's SLA target from now (earliest deadline first across
-- conversations). Returns true if the lane has a head.
local function make_ready(key, now)
  local head = redis.call('LINDEX', lane_key(key), 0)
  if not head then return false end
  local jk = job_key(head)
  local deadline = now + tonumber(redis.call('HGET', jk, 'target'))
  redis.call('HSET', jk, 'deadline', fmt(deadline))
  redis.call('ZADD', K_READY, deadline, key)
  return true
end
