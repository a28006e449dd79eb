-- lib/log_bucket.lua: the log bucket of a duration (w:<b>, s:<b>, p:<b> in lib/monitor.lua;
-- sluice.monitor.histogram reads them with the same formula).
--!include lib/monitor.lua

local function log_bucket(ms)
  if ms < 1 then return 0 end
  return math.floor(math.log(ms) / LN_BASE) + 1
end
