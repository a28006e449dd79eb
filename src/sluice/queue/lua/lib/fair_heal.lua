-- lib/fair_heal.lua: how many turns of an account are in flight, exactly.
--!include lib/keys.lua
--!include lib/fair_keys.lua

-- fair:run:<account> only grows when a turn of the account is reserved; nothing removes a
-- member when the turn ends (completion, retry, dead letter, lease recovery, hand-back,
-- cancel, drain all end it in their own way). Instead a member counts only while its
-- conversation is in `inflight`, the engine's own record of running lanes (one turn per
-- lane): the members that are not are dropped here. So a crashed worker, a lost
-- acknowledgement or any path that ends a turn can never leave an account's count too high
-- for longer than its next check. fair_select calls this only when the set is at the cap
-- (a smaller set cannot be over it), so the cost is paid by accounts at their cap.
local function fair_heal(acct)
  local rk = K_FAIR_RUN .. acct
  local members = redis.call('SMEMBERS', rk)
  if #members == 0 then return 0 end
  local running = redis.call('HMGET', K_INFLIGHT, unpack(members))
  local gone = {}
  for i, m in ipairs(members) do
    if not running[i] then gone[#gone + 1] = m end
  end
  if #gone > 0 then redis.call('SREM', rk, unpack(gone)) end
  return #members - #gone
end
