-- enqueue.lua: add one message to the tail of its conversation's lane.
--
-- A call that reaches Redis twice (its reply was lost and the client re-sent it) adds the
-- message once and answers the same both times: with a message id the dedupe record
-- catches the repeat and the job's `rq` (the request id that created it) tells that it is
-- the same call, not a duplicate delivery; without one the answer is kept under the
-- request id (lib/request_key.lua).
-- Over 80 lines with its header and includes; the code is one straight path: the repeat
-- checks, then the job's fields, then its lane.
--
-- KEYS: 1 the queue's meta key (see lib/keys.lua; the other keys derive from the prefix).
-- ARGV: 1 prefix, 2 request id ('' = none), 3 message id ('' = none), 4 conversation key,
--       5 payload (JSON), 6 priority class, 7 SLA target of the class (ms), 8 max attempts,
--       9 dedupe record TTL (ms), 10 n hop pairs (a partitioned queue adds its layout
--       guard: "n|epoch|" or "n|epoch|c", see below), then n x (hop name, epoch ms), then
--       optionally the message's trace context (W3C traceparent, stored as `tp`; sent only
--       while tracing is on, see sluice/tracing)
-- The layout guard (docs/partitions.md): the call is refused with {'', -1} unless the
-- partition's meta `epoch` is the caller's (its layout is current), and with 'c'
-- (a conversation staying on its old partition during a resize) with {'', -2} unless the
-- conversation has a lane or a job in flight here. Refusals write nothing; a duplicate
-- message id is answered before the guard.
-- Returns {job id, 1} for a new job ("<p>_<n>" on partition p >= 1), {first job id, 0} for a duplicate message id.
-- Events: enqueued (not for a repeat or a duplicate).
--!include lib/keys.lua
--!include lib/job_key.lua
--!include lib/payload_key.lua
--!include lib/lane_key.lua
--!include lib/now_ms.lua
--!include lib/fmt.lua
--!include lib/emit_job.lua
--!include lib/wake.lua
--!include lib/replayed.lua
--!include lib/request_key.lua

local rid, msg_id, key, payload = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local dedupe_key = PREFIX .. 'dedupe:' .. msg_id

-- The answer to a message id seen before: the first job's id, and whether this call is a
-- repeat of the one that created it (its `rq`) rather than a duplicate delivery.
local function duplicate(first)
  if rid ~= '' and redis.call('HGET', job_key(first), 'rq') == rid then
    return {first, 1}
  end
  return {first, 0}
end

local nhops, epoch, cond = string.match(ARGV[10], '^(%d+)|?(%d*)|?(c?)$')
nhops = tonumber(nhops)
local lk = lane_key(key)
if epoch ~= '' then
  -- A duplicate (or a repeat) is answered before the layout guard, and a refusal writes
  -- nothing: read first here, then the guard.
  if msg_id ~= '' then
    local first = redis.call('GET', dedupe_key)
    if first then return duplicate(first) end
  else
    local earlier = replayed(rid)
    if earlier then return {earlier, 1} end
  end
  if redis.call('HGET', K_META, 'epoch') ~= epoch then
    return {'', -1}
  end
  if cond == 'c' and redis.call('LLEN', lk) == 0 and redis.call('HEXISTS', K_INFLIGHT, key) == 0 then
    return {'', -2}
  end
end

local id = tostring(redis.call('INCR', K_SEQ))
-- Partition p >= 1 of a partitioned queue (prefix "sluice:{name#p}:") marks its ids
-- "<p>_<seq>", so ids are unique across partitions and name theirs; partition 0 (every
-- unpartitioned queue) keeps plain numbers (docs/partitions.md).
local part = string.match(PREFIX, '#(%d+)}:$')
if part then id = part .. '_' .. id end
-- The repeat checks and the records that answer them are one SET NX each (GET only when
-- it finds one: a duplicate or a repeat), one command less per message than GET then SET.
-- A duplicate leaves a gap in the job id sequence: ids are unique, not dense.
if msg_id ~= '' then
  if not redis.call('SET', dedupe_key, id, 'NX', 'PX', ARGV[9]) then
    return duplicate(redis.call('GET', dedupe_key))
  end
elseif rid ~= '' then
  local rk = request_key(rid)
  if not redis.call('SET', rk, id, 'NX', 'PX', REQUEST_TTL_MS) then
    return {redis.call('GET', rk), 1}
  end
end
local now = now_ms()

-- A lane that is empty and idle becomes ready now, with this job as its head; otherwise
-- its running job's end (or its retry) makes the next head ready, so order holds. The
-- job joins its lane first: RPUSH's answer (the lane's new length) tells whether it was
-- empty, one command less than asking LLEN before.
local ready = redis.call('RPUSH', lk, id) == 1 and redis.call('HEXISTS', K_INFLIGHT, key) == 0
local fields = {'id', id, 'key', key, 'prio', ARGV[6], 'target', ARGV[7],
  'max', ARGV[8], 'attempt', 0, 'state', 'waiting', 'h:enqueued', fmt(now)}
local deadline = now + tonumber(ARGV[7])
if ready then
  fields[#fields + 1] = 'deadline'
  fields[#fields + 1] = fmt(deadline)
end
if msg_id ~= '' then
  fields[#fields + 1] = 'mid'
  fields[#fields + 1] = msg_id
  if rid ~= '' then
    fields[#fields + 1] = 'rq'
    fields[#fields + 1] = rid
  end
end
for h = 0, nhops - 1 do
  fields[#fields + 1] = 'h:' .. ARGV[11 + 2 * h]
  fields[#fields + 1] = ARGV[12 + 2 * h]
end
local tp = ARGV[11 + 2 * nhops]
if tp and tp ~= '' then
  fields[#fields + 1] = 'tp'
  fields[#fields + 1] = tp
end
redis.call('HSET', job_key(id), unpack(fields))
redis.call('SET', payload_key(id), payload)
redis.call('ZADD', K_WAITING, now, id)
if ready then
  redis.call('ZADD', K_READY, deadline, key)
  wake(1)
end
-- The monitoring `enq` counters (lib/monitor.lua), written directly rather than through a
-- tally: enqueue observes nothing else. They are the enqueue count (always written, with
-- monitoring on or off): the per-second stats hash has no `enqueued` (one HINCRBY per
-- message less; nothing read it).
redis.call('HINCRBY', PREFIX .. 'mon:total', 'enq', 1)
local fine = PREFIX .. 'mon:10s:' .. math.floor(now / 10000)
if redis.call('HINCRBY', fine, 'enq', 1) == 1 then
  redis.call('EXPIRE', fine, 7200)
end
emit_job('enqueued', id, key)
return {id, 1}
