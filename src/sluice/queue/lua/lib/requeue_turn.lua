-- lib/requeue_turn.lua: put the jobs of a turn back at the head of their lane, in order.
--!include lib/job_key.lua
--!include lib/requeue_head.lua

-- For a turn that failed or whose lease expired (`ids`, in lane order); `fields` are
-- field/value pairs to set on each job.
local function requeue_turn(ids, key, now, fields)
  for i = #ids, 1, -1 do
    requeue_head(ids[i], key, now)
    redis.call('HSET', job_key(ids[i]), unpack(fields))
  end
end
