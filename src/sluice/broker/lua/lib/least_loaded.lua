-- lib/least_loaded.lua: among `candidates`, the one holding the fewest conversations while
-- below its capacity (ties: the first in configuration order), or nil when all are full.
--!include lib/keys.lua

local function least_loaded(candidates)
  local best, best_load = nil, nil
  for _, b in ipairs(candidates) do
    local load = tonumber(redis.call('HGET', K_LOAD, b.name) or '0')
    if load < b.capacity and (best == nil or load < best_load) then
      best, best_load = b, load
    end
  end
  return best
end
