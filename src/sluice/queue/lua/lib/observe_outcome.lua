-- lib/observe_outcome.lua: count an attempt's outcome ('fail', 'retry', 'dead') in a tally,
-- in the window and the totals alike.
--!include lib/add.lua

local function observe_outcome(tally, field)
  add(tally.fine, field, 1)
  add(tally.total, field, 1)
end
