-- lib/wake.lua: wake up to n idle workers blocked in BLPOP on the wake list.
--!include lib/keys.lua

local WAKE_MAX = 32          -- more tokens than idle workers only cause empty wake-ups

local function wake(n)
  if n <= 0 then return end
  if n > WAKE_MAX then n = WAKE_MAX end
  local length = 0
  for _ = 1, n do
    length = redis.call('LPUSH', K_WAKE, '1')
  end
  if length > WAKE_MAX then
    redis.call('LTRIM', K_WAKE, 0, WAKE_MAX - 1)
  end
end
