-- lib/fair_select.lua: which ready lanes a reservation takes when accounts are capped.
--!include lib/keys.lua
--!include lib/fair_keys.lua
--!include lib/fair_account.lua
--!include lib/fair_heal.lua
--!include lib/fair_note.lua
--!include lib/fair_pop.lua
--!include lib/wake.lua

local FAIR_RUN_TTL_MS = 3600000 -- a run set nobody reserved into for an hour is dropped
local FAIR_PARK_PER_CALL = 512  -- lanes held back per call at most (bounds one call's work)

-- Up to `allow` lanes, earliest deadline first, as ZPOPMIN would give them ({key, deadline,
-- ...}), except that an account at a cap does not get one while another account's lane
-- can take the slot (docs/fairness.md). The caps, per account (0 = that cap is off):
-- `conc` turns reserved at once, `rate` starts per second (GCRA with no burst, as Inngest's
-- throttle without `burst`: one start per 1000/rate ms).
--
-- 1. Accounts with lanes held back and room again (a turn ended, the rate allows a start)
--    get that many lanes back into `ready`, with their deadlines.
-- 2. `ready` is read in deadline order; a lane of an account at a cap is moved out of it to
--    fair:park:<account> (deadline kept), any other is taken.
-- 3. Work-conserving: slots still free once `ready` is empty go to held-back lanes anyway,
--    earliest deadline first across accounts ('lent'). A call that held back its budget of
--    FAIR_PARK_PER_CALL lanes with `ready` not yet empty lends nothing and wakes a worker
--    to go on. A cap therefore never leaves a slot
--    idle; it only decides who goes first while lanes of several accounts wait.
-- A taken lane is added to its account's run set and advances its rate state; nothing else
-- is written per job.
local function fair_select(allow, now, conc, rate)
  local interval = 0
  if rate > 0 then interval = 1000 / rate end
  local state = {} -- account -> {n = turns in flight, tat = next start allowed (ms)}
  local function account(acct)
    local s = state[acct]
    if s then return s end
    s = {n = 0, tat = now, taken = {}}
    if conc > 0 then
      s.n = redis.call('SCARD', K_FAIR_RUN .. acct)
      if s.n >= conc then s.n = fair_heal(acct) end
    end
    if rate > 0 then
      s.tat = math.max(now, tonumber(redis.call('GET', K_FAIR_TAT .. acct) or '0'))
    end
    state[acct] = s
    return s
  end
  local function cap_of(s) -- which cap holds the account back now, if any
    if conc > 0 and s.n >= conc then return 'c' end
    if rate > 0 and s.tat > now then return 'r' end
    return nil
  end
  local function take(s, key)
    s.n = s.n + 1
    s.tat = math.max(s.tat, now) + interval
    s.taken[#s.taken + 1] = key
  end
  local popped = {}
  -- 1. room again: at most what the caps allow now (one start under a rate cap)
  for _, acct in ipairs(redis.call('ZRANGE', K_FAIR_PARKED, 0, -1)) do
    local s = account(acct)
    if not cap_of(s) then
      local room = allow
      if conc > 0 then room = math.min(room, conc - s.n) end
      if rate > 0 then room = math.min(room, 1) end
      for _ = 1, room do
        local key, deadline = fair_pop(acct)
        if not key then break end
        redis.call('ZADD', K_READY, deadline, key)
      end
    end
  end
  -- 2. ready lanes in deadline order; capped accounts' lanes are held back
  local parked, got = 0, 0
  while got < allow and parked < FAIR_PARK_PER_CALL do
    local batch = redis.call('ZRANGE', K_READY, 0, allow - got - 1, 'WITHSCORES')
    if #batch == 0 then break end
    local gone = {}
    for i = 1, #batch, 2 do
      local key, deadline = batch[i], batch[i + 1]
      local acct = fair_account(key)
      local s = acct and account(acct)
      local why = s and cap_of(s)
      if why and parked >= FAIR_PARK_PER_CALL then break end
      gone[#gone + 1] = key
      if why then
        redis.call('ZADD', K_FAIR_PARK .. acct, deadline, key)
        redis.call('ZADD', K_FAIR_PARKED, 'LT', deadline, acct)
        parked = parked + 1
        if why == 'c' then
          fair_note('capped', why, acct, key, 'concurrency ' .. s.n .. '/' .. conc)
        else
          fair_note('capped', why, acct, key, 'rate ' .. rate .. '/s')
        end
      else
        popped[#popped + 1], popped[#popped + 2] = key, deadline
        got = got + 1
        if s then take(s, key) end
      end
    end
    redis.call('ZREM', K_READY, unpack(gone))
  end
  -- 3. work-conserving: idle slots go to held-back lanes, earliest deadline first. Not
  -- while `ready` still has lanes this call had no budget left to look at (one of them may
  -- be another account's): a worker is woken to continue at once instead.
  local looked_at_all = parked < FAIR_PARK_PER_CALL or redis.call('ZCARD', K_READY) == 0
  if got < allow and not looked_at_all then wake(1) end
  while got < allow and looked_at_all do
    local first = redis.call('ZRANGE', K_FAIR_PARKED, 0, 0)
    if #first == 0 then break end
    local acct = first[1]
    local key, deadline = fair_pop(acct)
    if key then
      local s = account(acct)
      popped[#popped + 1], popped[#popped + 2] = key, deadline
      got = got + 1
      fair_note('lent', 'l', acct, key, 'over its cap (' .. s.n .. ' in flight), no other lane ready')
      -- Lent starts leave no rate debt: an account that had the queue to itself is not
      -- held back afterwards for what it used while nobody else waited.
      s.n = s.n + 1
      s.tat = math.max(s.tat, now + interval)
      s.taken[#s.taken + 1] = key
    end
  end
  for acct, s in pairs(state) do
    if #s.taken > 0 then
      if conc > 0 then
        local rk = K_FAIR_RUN .. acct
        redis.call('SADD', rk, unpack(s.taken))
        redis.call('PEXPIRE', rk, FAIR_RUN_TTL_MS)
      end
      if rate > 0 then
        redis.call('SET', K_FAIR_TAT .. acct, tostring(s.tat), 'PX',
          math.max(1, math.ceil(s.tat - now)))
      end
    end
  end
  return popped
end
