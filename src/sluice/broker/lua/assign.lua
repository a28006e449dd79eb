-- assign.lua: give a conversation its broker, in one atomic step.
--
-- Rules, first match wins:
--   forced        ARGV[3] names a broker: move the conversation there (handoff to a chosen agent)
--   sticky        the conversation already has a broker that still exists and is of the
--                 requested kind: keep it (even if unavailable or over capacity: the customer
--                 keeps talking to the same agent)
--   least_loaded  among available brokers of the kind with load < capacity, the least loaded;
--                 ties go to the first in configuration order
--   round_robin   all of them are full: the next available broker of the kind in turn
--                 (a per-kind counter), over capacity rather than leaving a customer unassigned
-- When no broker of the kind is available, the same two rules run over every broker of the
-- kind, and the reply says so (degraded = 1). Moving a conversation off a broker frees one
-- unit of that broker's load. Over 80 lines because the rules are one decision: the code
-- below takes them in the order above, each ending the script with its answer.
--
-- First, assignments of conversations idle past the TTL are forgotten (lib/expire_idle.lua),
-- so the loads compared below count live conversations only; the conversation's own
-- assignment is then marked alive (now) in the seen index.
--
-- KEYS: 1-4 assignments, loads, seen, adopt: see lib/keys.lua
--       5 rr          HASH kind filter ('*' = any kind) -> round-robin counter
-- ARGV: 1 conversation key, 2 kind filter ('' = any kind), 3 forced broker name ('' = none),
--       4 n brokers, then n x (name, kind, capacity, available 1/0), in configuration order,
--       then the conversation state key prefix ('<queue prefix>conv:') and the idle TTL (ms)
-- Returns {broker name, rule, previous broker name or '', degraded 0/1};
-- {'', 'none', previous, 0} when no configured broker is of the kind.
-- Events: none (the caller tells Chatwoot when the broker changed).
--!include lib/keys.lua
--!include lib/now_ms.lua
--!include lib/expire_idle.lua
--!include lib/decrement_load.lua
--!include lib/brokers_of_kind.lua
--!include lib/least_loaded.lua

local K_RR = KEYS[5]
local key, kind, forced = ARGV[1], ARGV[2], ARGV[3]
local n = tonumber(ARGV[4])
local conv_prefix, idle_ttl = ARGV[5 + 4 * n], tonumber(ARGV[6 + 4 * n])

local now = now_ms()
expire_idle(conv_prefix, idle_ttl, now)

local brokers, by_name = {}, {}
for i = 0, n - 1 do
  local b = {
    name = ARGV[5 + 4 * i],
    kind = ARGV[6 + 4 * i],
    capacity = tonumber(ARGV[7 + 4 * i]),
    available = ARGV[8 + 4 * i] == '1',
  }
  brokers[#brokers + 1] = b
  by_name[b.name] = b
end

local current = redis.call('HGET', K_ASSIGN, key)
local previous = current or ''
if current then
  redis.call('ZADD', K_SEEN, now, key)  -- the conversation is active: its assignment too
end

local function move(name, rule, degraded)
  if current ~= name then
    if current then
      decrement_load(current)
    end
    redis.call('HSET', K_ASSIGN, key, name)
    redis.call('HINCRBY', K_LOAD, name, 1)
    redis.call('ZADD', K_SEEN, now, key)
  end
  return {name, rule, previous, degraded}
end

if forced ~= '' then
  if not by_name[forced] then
    return redis.error_reply('unknown broker ' .. forced)
  end
  return move(forced, 'forced', 0)
end

if current then
  local b = by_name[current]
  if b and (kind == '' or b.kind == kind) then
    return {current, 'sticky', previous, 0}
  end
end

local candidates, degraded = brokers_of_kind(brokers, kind, true), 0
if #candidates == 0 then
  candidates, degraded = brokers_of_kind(brokers, kind, false), 1
end
if #candidates == 0 then
  return {'', 'none', previous, 0}
end

-- The current broker (if any) is never a candidate here: it was either removed from the
-- configuration or is of another kind, so its load needs no adjustment for this comparison.
local best = least_loaded(candidates)
if best then
  return move(best.name, 'least_loaded', degraded)
end

local turn = redis.call('HINCRBY', K_RR, kind == '' and '*' or kind, 1)
return move(candidates[((turn - 1) % #candidates) + 1].name, 'round_robin', degraded)
