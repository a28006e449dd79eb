-- lib/take_batch.lua: take the jobs a lane's next turn answers off the lane.
--!include lib/job_key.lua

-- Its head, and with batch_max > 1 up to batch_max - 1 jobs behind it (a burst). A job
-- marked `solo` (a turn of it failed or expired again: requeue_solo) is taken alone when it
-- is the head, and ends a batch before it otherwise. `lk` is the lane's key. Returns the
-- ids in lane order (none for an empty lane).
local function take_batch(lk, batch_max)
  if batch_max <= 1 then
    local id = redis.call('LPOP', lk)
    if id then return {id} end
    return {}
  end
  local ids = redis.call('LRANGE', lk, 0, batch_max - 1)
  if #ids > 1 then
    for n, id in ipairs(ids) do
      if redis.call('HEXISTS', job_key(id), 'solo') == 1 then
        for i = #ids, math.max(1, n - 1) + 1, -1 do
          ids[i] = nil
        end
        break
      end
    end
  end
  if #ids > 0 then
    redis.call('LTRIM', lk, #ids, -1)
  end
  return ids
end
