-- lib/fair_select.lua: which ready lanes a reservation takes when accounts are capped.
--!include lib/keys.lua
--!include lib/fair_keys.lua
--!include lib/fair_account.lua
--!include lib/fair_inbox.lua
--!include lib/fair_heal.lua
--!include lib/fair_note.lua
--!include lib/fair_pop.lua
--!include lib/wake.lua

local FAIR_RUN_TTL_MS = 3600000 -- a run set nobody reserved into for an hour is dropped
local FAIR_PARK_PER_CALL = 512  -- lanes held back per call at most (bounds one call's work)

-- Up to `allow` lanes, earliest deadline first, as ZPOPMIN would give them ({key, deadline,
-- ...}), except that a group at a cap does not get one while another lane can take the
-- slot (docs/fairness.md). A lane's groups are its account (the key up to its first ':')
-- and, while an inbox cap is on, its inbox ("<account>/<inbox>", fair_inbox). `caps` holds
-- per account `conc` (turns reserved at once) and `rate` (starts per second: GCRA with no
-- burst, as Inngest's throttle without `burst`: one start per 1000/rate ms), and the same
-- per inbox as `inbox_conc`, `inbox_rate`; 0 = that cap is off.
--
-- 1. Groups with lanes held back and room again (a turn ended, the rate allows a start)
--    get that many lanes back into `ready`, with their deadlines.
-- 2. `ready` is read in deadline order; a lane with a group at a cap is moved out of it to
--    fair:park:<group> (deadline kept; the first group found at its cap), any other is
--    taken.
-- 3. Work-conserving: slots still free once `ready` is empty go to held-back lanes anyway
--    ('lent'), to the group with the fewest turns in flight first (max-min fair: the
--    surplus goes to whoever has least; earliest deadline among equals), within a group
--    earliest deadline first. A call that held back its budget of
--    FAIR_PARK_PER_CALL lanes with `ready` not yet empty lends nothing and wakes a worker
--    to go on. A cap therefore never leaves a slot idle; it only decides who goes first
--    while lanes of several accounts wait.
-- A taken lane is added to its groups' run sets and advances their rate states; nothing
-- else is written per job.
local function fair_select(allow, now, caps)
  local inboxes = caps.inbox_conc > 0 or caps.inbox_rate > 0
  local state = {} -- group -> {conc, rate, interval, n = turns in flight, tat, taken}
  local function group(name)
    local s = state[name]
    if s then return s end
    if string.find(name, '/', 1, true) then
      s = {conc = caps.inbox_conc, rate = caps.inbox_rate}
    else
      s = {conc = caps.conc, rate = caps.rate}
    end
    s.interval, s.tat, s.taken = 0, now, {}
    s.n = redis.call('SCARD', K_FAIR_RUN .. name)
    s.exact = s.n == 0
    if s.conc > 0 and s.n >= s.conc then
      s.n, s.exact = fair_heal(name), true
    end
    if s.rate > 0 then
      s.interval = 1000 / s.rate
      s.tat = math.max(now, tonumber(redis.call('GET', K_FAIR_TAT .. name) or '0'))
    end
    state[name] = s
    return s
  end
  local function cap_of(s) -- which cap holds the group back now, if any
    if s.conc > 0 and s.n >= s.conc then return 'c' end
    if s.rate > 0 and s.tat > now then return 'r' end
    return nil
  end
  local function groups_of(key) -- the lane's groups: {} for a key without an account
    local acct = fair_account(key)
    if not acct then return {} end
    local names = {acct}
    if inboxes then
      local inbox = fair_inbox(key, acct)
      if inbox then names[2] = inbox end
    end
    return names
  end
  local function take(names, key, lent)
    for _, name in ipairs(names) do
      local s = group(name)
      s.n = s.n + 1
      if lent then
        -- Lent starts leave no rate debt: a group that had the queue to itself is not held
        -- back afterwards for what it used while nobody else waited.
        s.tat = math.max(s.tat, now + s.interval)
      else
        s.tat = math.max(s.tat, now) + s.interval
      end
      s.taken[#s.taken + 1] = key
    end
  end
  local popped = {}
  -- 1. room again: at most what the caps allow now (one start under a rate cap)
  for _, name in ipairs(redis.call('ZRANGE', K_FAIR_PARKED, 0, -1)) do
    local s = group(name)
    if not cap_of(s) then
      local room = allow
      if s.conc > 0 then room = math.min(room, s.conc - s.n) end
      if s.rate > 0 then room = math.min(room, 1) end
      for _ = 1, room do
        local key, deadline = fair_pop(name)
        if not key then break end
        redis.call('ZADD', K_READY, deadline, key)
      end
    end
  end
  -- 2. ready lanes in deadline order; lanes of groups at a cap are held back
  local parked, got = 0, 0
  while got < allow and parked < FAIR_PARK_PER_CALL do
    local batch = redis.call('ZRANGE', K_READY, 0, allow - got - 1, 'WITHSCORES')
    if #batch == 0 then break end
    local gone = {}
    for i = 1, #batch, 2 do
      local key, deadline = batch[i], batch[i + 1]
      local names = groups_of(key)
      local held, why = nil, nil
      for _, name in ipairs(names) do
        why = cap_of(group(name))
        if why then
          held = name
          break
        end
      end
      if held and parked >= FAIR_PARK_PER_CALL then break end
      gone[#gone + 1] = key
      if held then
        redis.call('ZADD', K_FAIR_PARK .. held, deadline, key)
        redis.call('ZADD', K_FAIR_PARKED, 'LT', deadline, held)
        parked = parked + 1
        local s = state[held]
        if why == 'c' then
          fair_note('capped', why, held, key, 'concurrency ' .. s.n .. '/' .. s.conc)
        else
          fair_note('capped', why, held, key, 'rate ' .. s.rate .. '/s')
        end
      else
        popped[#popped + 1], popped[#popped + 2] = key, deadline
        got = got + 1
        take(names, key, false)
      end
    end
    redis.call('ZREM', K_READY, unpack(gone))
  end
  -- 3. work-conserving: idle slots go to held-back lanes, to the group with the fewest
  -- turns in flight first (earliest deadline among equals). Not while `ready` still has
  -- lanes this call had no budget left to look at (one of them may be another account's):
  -- a worker is woken to continue at once instead.
  local looked_at_all = parked < FAIR_PARK_PER_CALL or redis.call('ZCARD', K_READY) == 0
  if got < allow and not looked_at_all then wake(1) end
  local lenders = nil -- {name, earliest deadline} of the groups with lanes held back
  if got < allow and looked_at_all then
    lenders = redis.call('ZRANGE', K_FAIR_PARKED, 0, -1, 'WITHSCORES')
  end
  while lenders and got < allow do
    local name, best = nil, nil
    for i = 1, #lenders, 2 do
      if lenders[i] then
        local s = group(lenders[i])
        if not s.exact then s.n, s.exact = fair_heal(lenders[i]), true end
        if not best or s.n < best.n then name, best = lenders[i], s end
      end
    end
    if not name then break end
    local key, deadline = fair_pop(name)
    if not key then
      for i = 1, #lenders, 2 do
        if lenders[i] == name then lenders[i] = false end
      end
    end
    if key then
      popped[#popped + 1], popped[#popped + 2] = key, deadline
      got = got + 1
      fair_note('lent', 'l', name, key,
        'over its cap (' .. group(name).n .. ' in flight), no other lane ready')
      take(groups_of(key), key, true)
    end
  end
  for name, s in pairs(state) do
    if #s.taken > 0 then
      -- Kept under a rate cap too: lending goes to the group with the fewest turns.
      local rk = K_FAIR_RUN .. name
      redis.call('SADD', rk, unpack(s.taken))
      redis.call('PEXPIRE', rk, FAIR_RUN_TTL_MS)
      if s.rate > 0 then
        redis.call('SET', K_FAIR_TAT .. name, tostring(s.tat), 'PX',
          math.max(1, math.ceil(s.tat - now)))
      end
    end
  end
  return popped
end
