-- lib/parse_refs.lua: a list of job refs as the worker packs it, "id:token,id:token,...",
-- as the flat list {id, token, id, token, ...} that charge_starts takes (ids and tokens are
-- numbers).

local function parse_refs(packed)
  local refs = {}
  for id, token in string.gmatch(packed, '([^:,]+):([^,]+)') do
    refs[#refs + 1], refs[#refs + 2] = id, token
  end
  return refs
end
