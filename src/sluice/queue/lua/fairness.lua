-- fairness.lua: set or clear the caps of tenant fairness (docs/fairness.md).
--
-- The caps live in the queue's meta (`acct_concurrency`: turns of one account reserved at
-- once; `acct_rate`: starts per second of one account; `inbox_concurrency`, `inbox_rate`:
-- the same per inbox), read by every reservation (lib/reserve.lua, lib/fair_select.lua);
-- 0 clears a cap. Clearing all four turns fairness off, and then every lane held back under
-- a cap goes back to `ready` with its deadline at once: with the caps off nothing would
-- ever look at fair:park again. Workers hear `rate` on the control channel and hand back
-- their prefetch buffers (reserved before the caps applied); idle workers are woken for the
-- lanes that came back.
--
-- KEYS: 1 the queue's meta key (see lib/keys.lua; the other keys derive from the prefix).
-- ARGV: 1 prefix, 2 account concurrency cap (0 = none), 3 account start-rate cap in
--       starts/s (0 = none), 4 inbox concurrency cap, 5 inbox start-rate cap
-- Returns how many held-back lanes went back to `ready`.
-- Events: config (key acct_concurrency / acct_rate / inbox_concurrency / inbox_rate, info
-- the value, '' when cleared) for
-- each cap that changed; released (info 'fairness off', the number of lanes) when lanes
-- went back; `rate` on the control channel.
--!include lib/keys.lua
--!include lib/fair_keys.lua
--!include lib/fair_pop.lua
--!include lib/emit.lua
--!include lib/announce.lua
--!include lib/wake.lua

local function apply(field, value)
  local n = tonumber(value)
  local old = redis.call('HGET', K_META, field)
  if n == 0 then
    redis.call('HDEL', K_META, field)
    if old then emit('config', nil, field, '') end
  else
    redis.call('HSET', K_META, field, value)
    if old ~= value then emit('config', nil, field, value) end
  end
  return n
end

for _, v in ipairs({ARGV[2], ARGV[3], ARGV[4], ARGV[5]}) do
  local n = tonumber(v)
  if not n or n < 0 then
    return redis.error_reply('fairness caps must be numbers >= 0, got ' .. tostring(v))
  end
end
local conc = apply('acct_concurrency', ARGV[2])
local rate = apply('acct_rate', ARGV[3])
local inbox_conc = apply('inbox_concurrency', ARGV[4])
local inbox_rate = apply('inbox_rate', ARGV[5])
local released = 0
if conc == 0 and rate == 0 and inbox_conc == 0 and inbox_rate == 0 then
  for _, name in ipairs(redis.call('ZRANGE', K_FAIR_PARKED, 0, -1)) do
    while true do
      local key, deadline = fair_pop(name)
      if not key then break end
      redis.call('ZADD', K_READY, deadline, key)
      released = released + 1
    end
  end
  if released > 0 then
    emit('released', nil, nil, 'fairness off|' .. released)
    wake(released)
  end
end
announce('rate')
return released
