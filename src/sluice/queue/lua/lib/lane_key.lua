-- lib/lane_key.lua: the key of a conversation's lane (LIST of its waiting job ids, in order).
--!include lib/keys.lua

local function lane_key(key)
  return PREFIX .. 'lane:' .. key
end
