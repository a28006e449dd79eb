-- lib/brokers_of_kind.lua: the brokers of `kind` ('' = any kind), in configuration order;
-- with only_available, only those that may take new conversations now.

local function brokers_of_kind(brokers, kind, only_available)
  local out = {}
  for _, b in ipairs(brokers) do
    if (kind == '' or b.kind == kind) and (b.available or not only_available) then
      out[#out + 1] = b
    end
  end
  return out
end
