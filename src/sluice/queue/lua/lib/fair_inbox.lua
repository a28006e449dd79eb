-- lib/fair_inbox.lua: the inbox group a conversation belongs to, for per-inbox caps.
--!include lib/keys.lua
--!include lib/lane_key.lua
--!include lib/payload_key.lua

-- "<account>/<inbox>" from the `inbox_id` of the payload of the lane's head job (the
-- intake's payload carries it: service/message.py; in Chatwoot a conversation belongs to
-- one inbox, so its head tells the lane's), or nil when the lane is empty or its payload
-- names no inbox (such a lane is capped by its account only). Read only while an inbox cap
-- is on: one LINDEX, one GET and a JSON decode per lane looked at.
local function fair_inbox(key, acct)
  local head = redis.call('LINDEX', lane_key(key), 0)
  if not head then return nil end
  local body = redis.call('GET', payload_key(head))
  if not body then return nil end
  local ok, decoded = pcall(cjson.decode, body)
  if not ok or type(decoded) ~= 'table' then return nil end
  local inbox = decoded['inbox_id']
  if type(inbox) ~= 'number' and type(inbox) ~= 'string' then return nil end
  return acct .. '/' .. tostring(inbox)
end
