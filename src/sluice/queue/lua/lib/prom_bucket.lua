-- lib/prom_bucket.lua: the Prometheus bucket of a duration (index into PROM_BOUNDS_MS of
-- lib/monitor.lua; one past the end is +Inf).
--!include lib/monitor.lua

local function prom_bucket(ms)
  for i, bound in ipairs(PROM_BOUNDS_MS) do
    if ms <= bound then return i end
  end
  return #PROM_BOUNDS_MS + 1
end
