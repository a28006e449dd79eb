-- lib/promote_delayed.lua: lanes whose retry backoff has passed become ready again.
--!include lib/keys.lua
--!include lib/job_key.lua
--!include lib/lane_key.lua
--!include lib/ready_again.lua

local function promote_delayed(now)
  local due = redis.call('ZRANGEBYSCORE', K_DELAYED, '-inf', now, 'LIMIT', 0, 100)
  for _, key in ipairs(due) do
    redis.call('ZREM', K_DELAYED, key)
    local head = redis.call('LINDEX', lane_key(key), 0)
    if head then
      local jk = job_key(head)
      redis.call('HSET', jk, 'state', 'waiting')
      ready_again(key, jk, now)
    end
  end
end
