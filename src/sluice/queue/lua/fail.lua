-- fail.lua: a handler failed. Retry later at the head of its lane (the conversation waits,
-- so order holds), or dead-letter it after its last attempt or a non-retryable error (the
-- conversation moves on). A batch (a burst answered in one turn) fails as a whole: pass
-- all its jobs in lane order; the leader's attempt count decides. A retried batch is not
-- retried as a batch: each of its jobs is marked solo and reserved alone from now on
-- (lib/requeue_solo.lua), so a line that fails every time uses up only its own attempts
-- while the lines it was batched with are answered. On the last attempt only the leading
-- run of members that used up their own attempts is buried, the rest go back to the head
-- of the lane, solo (bury_exhausted); a non-retryable error buries the whole batch.
-- A prefetched turn whose start was not charged yet is charged first: it ran.
-- Over 80 lines with its header and includes; the code is three steps: check the turn is
-- still the caller's, then retry it whole, or bury what used up its attempts.
--
-- KEYS: 1 the queue's meta key (see lib/keys.lua; the other keys derive from the prefix).
-- ARGV: 1 prefix, 2 request id (lib/request_key.lua: a repeated call acts once), 3 error
--       text, 4 backoff (ms, computed by the caller with jitter), 5 retryable (1/0),
--       6 monitoring (1/0), 7 n jobs, then n x (job id, reservation token) in lane order,
--       then m, then m x (hop name, epoch ms) marked on every job, notes (Job.note) among
--       them as ("n:name", value)
-- Returns 'retry', 'dead' (the turn ended: its jobs are dead letters, except survivors of
-- its last attempt, requeued solo) or 'lost' (a reservation had expired; nothing changed).
-- Events: started (charge_starts); retry for the leader of a retried turn, else dead per
-- buried job and retry per survivor.
--!include lib/keys.lua
--!include lib/job_key.lua
--!include lib/now_ms.lua
--!include lib/fmt.lua
--!include lib/emit.lua
--!include lib/count.lua
--!include lib/wake.lua
--!include lib/replayed.lua
--!include lib/remember.lua
--!include lib/refs_at.lua
--!include lib/charge_starts.lua
--!include lib/requeue_solo.lua
--!include lib/entomb.lua
--!include lib/bury_exhausted.lua
--!include lib/advance_lane.lua
--!include lib/new_tally.lua
--!include lib/observe_outcome.lua
--!include lib/flush_monitor.lua

local rid = ARGV[2]
local earlier = replayed(rid)
if earlier then
  return earlier
end
local err, backoff = ARGV[3], tonumber(ARGV[4])
local n = tonumber(ARGV[7])
local ids = {}
for i = 0, n - 1 do
  local id, token = ARGV[8 + 2 * i], ARGV[9 + 2 * i]
  local tok, state = unpack(redis.call('HMGET', job_key(id), 'token', 'state'))
  if state ~= 'active' or tok ~= token then
    return 'lost'
  end
  ids[#ids + 1] = id
end
charge_starts(refs_at(8, n))
local at = 8 + 2 * n
local nmarks = tonumber(ARGV[at])
local marks = {}
for m = 0, nmarks - 1 do
  local name = ARGV[at + 1 + 2 * m]
  -- A hop's field is h:<hop>; a note (Job.note) comes as n:<name> and is stored as it is.
  if string.sub(name, 1, 2) ~= 'n:' then name = 'h:' .. name end
  marks[#marks + 1] = name
  marks[#marks + 1] = ARGV[at + 2 + 2 * m]
end

local tally = nil -- monitoring off: the failure is not observed
if ARGV[6] == '1' then tally = new_tally() end
local now = now_ms()
local leader = job_key(ids[1])
local key, attempt, max = unpack(redis.call('HMGET', leader, 'key', 'attempt', 'max'))
for _, id in ipairs(ids) do
  redis.call('ZREM', K_ACTIVE, id)
  if #marks > 0 then redis.call('HSET', job_key(id), unpack(marks)) end
end
count('failed', 1, now)
if tally then observe_outcome(tally, 'fail') end
if ARGV[5] == '1' and tonumber(attempt) < tonumber(max) then
  requeue_solo(ids, key, now, {'err', err, 'h:failed', fmt(now)})
  redis.call('HSET', leader, 'state', 'delayed')
  redis.call('ZADD', K_DELAYED, now + backoff, key)
  count('retried', 1, now)
  if tally then observe_outcome(tally, 'retry') end
  emit('retry', ids[1], key, err)
  wake(1)
  if tally then flush_monitor(tally, now) end
  remember(rid, 'retry')
  return 'retry'
end
if ARGV[5] == '1' then
  bury_exhausted(ids, key, err, now, 'retry', tally)
else
  for _, id in ipairs(ids) do
    entomb(id, key, err, now, tally)
  end
  if advance_lane(key, ids[1], now) then wake(1) end
end
if tally then flush_monitor(tally, now) end
remember(rid, 'dead')
return 'dead'
