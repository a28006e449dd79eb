-- lib/fair_account.lua: the account a conversation belongs to, for tenant fairness.

-- What the key names before its first ':' (the intake's keys are "<account>:<conversation>",
-- service/intake.py); nil for a key without one (such a conversation is never capped).
local function fair_account(key)
  local at = string.find(key, ':', 1, true)
  if not at or at == 1 then return nil end
  return string.sub(key, 1, at - 1)
end
