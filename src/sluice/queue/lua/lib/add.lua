-- lib/add.lua: add n to `field` of an increments table (a tally's `fine` or `total`).

local function add(t, field, n)
  t[field] = (t[field] or 0) + n
end
