-- lib/advance_lane.lua: the running job of a lane has ended (completed or dead): the lane
-- moves on, and its next head (if any) becomes ready with a fresh deadline.
--!include lib/keys.lua
--!include lib/make_ready.lua
--!include lib/wake.lua

local function advance_lane(key, id, now)
  if redis.call('HGET', K_INFLIGHT, key) == id then
    redis.call('HDEL', K_INFLIGHT, key)
  end
  if make_ready(key, now) then wake(1) end
end
