-- lib/advance_lane.lua: the running job of a lane has ended (completed or dead): the lane
-- moves on, and its next head (if any) becomes ready with a fresh deadline.
--!include lib/keys.lua
--!include lib/make_ready.lua

-- Returns true if the lane has a head now: the caller wakes a worker for it (wake), once
-- per call for all its lanes (complete.lua ends a batch of jobs with one wake).
local function advance_lane(key, id, now)
  if redis.call('HGET', K_INFLIGHT, key) == id then
    redis.call('HDEL', K_INFLIGHT, key)
  end
  return make_ready(key, now)
end
