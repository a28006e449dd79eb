-- lib/fair_pop.lua: take an account's earliest held-back lane out of its park.
--!include lib/keys.lua
--!include lib/lane_key.lua
--!include lib/fair_keys.lua

-- Returns the lane's key and deadline, or nil when the account has none left; keeps the
-- fair:parked index at the account's next earliest deadline (or drops the account).
-- A parked entry whose lane has meanwhile become something else is dropped, never
-- returned: its lane was cancelled or drained (its jobs are gone, the lane is empty), or it
-- came back on its own path (a new message after a cancel put it in `ready`, or it is
-- running or waiting for a retry). Returning it would let a second turn of one
-- conversation start while the first runs, so the check is the lane's own state, not the
-- park's.
local function fair_pop(acct)
  local pk = K_FAIR_PARK .. acct
  while true do
    local got = redis.call('ZPOPMIN', pk)
    if #got == 0 then
      redis.call('ZREM', K_FAIR_PARKED, acct)
      return nil
    end
    local key = got[1]
    if redis.call('HEXISTS', K_INFLIGHT, key) == 0
        and not redis.call('ZSCORE', K_READY, key)
        and not redis.call('ZSCORE', K_DELAYED, key)
        and redis.call('LLEN', lane_key(key)) > 0 then
      local nxt = redis.call('ZRANGE', pk, 0, 0, 'WITHSCORES')
      if #nxt == 0 then
        redis.call('ZREM', K_FAIR_PARKED, acct)
      else
        redis.call('ZADD', K_FAIR_PARKED, nxt[2], acct)
      end
      return key, got[2]
    end
  end
end
