-- lib/make_ready.lua: a lane's head becomes eligible now, with a fresh deadline.
--!include lib/keys.lua
--!include lib/job_key.lua
--!include lib/lane_key.lua

-- The head's deadline is its class's SLA target from now (earliest deadline first across
-- conversations). It is the lane's score in the ready set only: the reservation writes it
-- into the job with the job's other changes (lib/reserve.lua), one HSET less per message.
-- Returns true if the lane has a head.
local function make_ready(key, now)
  local head = redis.call('LINDEX', lane_key(key), 0)
  if not head then return false end
  local deadline = now + tonumber(redis.call('HGET', job_key(head), 'target'))
  redis.call('ZADD', K_READY, deadline, key)
  return true
end
