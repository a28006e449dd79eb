-- lib/refs_at.lua: the job refs of ARGV[first .. first + 2n - 1] (n job id, token pairs) as
-- the flat list charge_starts takes.

local function refs_at(first, n)
  local refs = {}
  for i = 0, 2 * n - 1 do
    refs[#refs + 1] = ARGV[first + i]
  end
  return refs
end
