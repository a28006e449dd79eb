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
--
-- The set is read and pruned in chunks: under a start-rate cap alone nothing heals it
-- until an idle slot is lent, so it can hold every conversation the account started in
-- the last hour, more than Lua's unpack takes at once (about 8000); an error there would
-- abort the reservation after lanes were already taken out of `ready`.
local FAIR_HEAL_CHUNK = 1000

local function fair_heal(acct)
  local rk = K_FAIR_RUN .. acct
  local members = redis.call('SMEMBERS', rk)
  local kept = 0
  for first = 1, #members, FAIR_HEAL_CHUNK do
    local last = math.min(first + FAIR_HEAL_CHUNK - 1, #members)
    local running = redis.call('HMGET', K_INFLIGHT, unpack(members, first, last))
    local gone = {}
    for i = first, last do
      if running[i - first + 1] then
        kept = kept + 1
      else
        gone[#gone + 1] = members[i]
      end
    end
    if #gone > 0 then redis.call('SREM', rk, unpack(gone)) end
  end
  return kept
end
