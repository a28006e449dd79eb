-- lib/ready_again.lua: a lane whose head was retried, recovered or handed back is ready again.
--!include lib/keys.lua

-- A retried or recovered job keeps the deadline it already had: its customer has been
-- waiting since then, so it must not queue behind later arrivals. `jk` is the head's job key.
local function ready_again(key, jk, now)
  local deadline, target = unpack(redis.call('HMGET', jk, 'deadline', 'target'))
  redis.call('ZADD', K_READY, tonumber(deadline) or (now + tonumber(target)), key)
end
