-- lib/wake.lua: wake up to n idle workers blocked in BLPOP on the wake list.
--!include lib/keys.lua

local WAKE_MAX = 32          -- more tokens than idle workers only cause empty wake-ups

-- One LPUSH of n tokens (a caller that readied several lanes wakes once for all of them).
local function wake(n)
  if n <= 0 then return end
  if n > WAKE_MAX then n = WAKE_MAX end
  local tokens = {}
  for i = 1, n do
    tokens[i] = '1'
  end
  if redis.call('LPUSH', K_WAKE, unpack(tokens)) > WAKE_MAX then
    redis.call('LTRIM', K_WAKE, 0, WAKE_MAX - 1)
  end
end
