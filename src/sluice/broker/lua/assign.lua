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
-- unit of that broker's load.
--
-- First, assignments of conversations idle past the TTL are forgotten (lib/expire.lua), so
-- the loads compared below count live conversations only; the conversation's own
-- assignment is then marked alive (now) in the seen index.
--
-- KEYS: 1-4 assignments, loads, seen, adopt: see lib/expire.lua
--       5 rr          HASH kind filter ('*' = any kind) -> round-robin counter
-- ARGV: 1 conversation key, 2 kind filter ('' = any kind), 3 forced broker name ('' = none),
--       4 n brokers, then n x (name, kind, capacity, available 1/0), in configuration order,
--       then the conversation state key prefix ('<queue prefix>conv:') and the idle TTL (ms)
-- Returns {broker name, rule, previous broker name or '', degraded 0/1};
-- {'', 'none', previous, 0} when no configured broker is of the kind.
--!include lib/expire.lua
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
      if redis.call('HINCRBY', K_LOAD, current, -1) <= 0 then
        redis.call('HDEL', K_LOAD, current)
      end
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

local function pool(only_available)
  local out = {}
  for _, b in ipairs(brokers) do
    if (kind == '' or b.kind == kind) and (b.available or not only_available) then
      out[#out + 1] = b
    end
  end
  return out
end

local candidates, degraded = pool(true), 0
if #candidates == 0 then
  candidates, degraded = pool(false), 1
end
if #candidates == 0 then
  return {'', 'none', previous, 0}
end

-- The current broker (if any) is never a candidate here: it was either removed from the
-- configuration or is of another kind, so its load needs no adjustment for this comparison.
local best, best_load = nil, nil
for _, b in ipairs(candidates) do
  local load = tonumber(redis.call('HGET', K_LOAD, b.name) or '0')
  if load < b.capacity and (best == nil or load < best_load) then
    best, best_load = b, load
  end
end
if best then
  return move(best.name, 'least_loaded', degraded)
end

local turn = redis.call('HINCRBY', K_RR, kind == '' and '*' or kind, 1)
return move(candidates[((turn - 1) % #candidates) + 1].name, 'round_robin', degraded)
