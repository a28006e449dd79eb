-- lib/observe.lua: count one duration of `kind` ('w' wait, 's' SLA, 'p' processing) in a
-- tally: its log bucket in the window, its Prometheus bucket in the totals.
--!include lib/add.lua
--!include lib/log_bucket.lua
--!include lib/prom_bucket.lua

local function observe(tally, kind, ms)
  add(tally.fine, kind .. ':' .. log_bucket(ms), 1)
  add(tally.total, 'h' .. kind .. ':' .. prom_bucket(ms), 1)
end
