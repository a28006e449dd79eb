-- lib/fmt.lua: a time (epoch ms, with a fraction) as the string stored in a job's fields.

-- Lua's tostring keeps 14 digits, too few for epoch milliseconds with a fraction.
local function fmt(x)
  return string.format('%.3f', x)
end
