-- enqueue.lua: add one message to the tail of its conversation's lane.
--
-- KEYS: 1 the queue's meta key (see lib/core.lua; the other keys derive from the prefix).
-- ARGV: 1 prefix, 2 message id ('' = none), 3 conversation key, 4 payload (JSON),
--       5 priority class, 6 SLA target of the class (ms), 7 max attempts,
--       8 dedupe record TTL (ms), 9 n hop pairs, then n x (hop name, epoch ms)
-- Returns {job id, 1} for a new job, {first job id, 0} for a duplicate message id.
--!include lib/core.lua

local msg_id, key, payload = ARGV[2], ARGV[3], ARGV[4]
local dedupe_key = PREFIX .. 'dedupe:' .. msg_id
if msg_id ~= '' then
  local first = redis.call('GET', dedupe_key)
  if first then
    return {first, 0}
  end
end

local now = now_ms()
local id = tostring(redis.call('INCR', K_SEQ))
if msg_id ~= '' then
  redis.call('SET', dedupe_key, id, 'PX', ARGV[8])
end

-- A lane that is empty and idle becomes ready now, with this job as its head; otherwise
-- its running job's end (or its retry) makes the next head ready, so order holds.
local lk = lane_key(key)
local ready = redis.call('LLEN', lk) == 0 and redis.call('HEXISTS', K_INFLIGHT, key) == 0
local fields = {'id', id, 'key', key, 'prio', ARGV[5], 'target', ARGV[6],
  'max', ARGV[7], 'attempt', 0, 'state', 'waiting', 'h:enqueued', fmt(now)}
local deadline = now + tonumber(ARGV[6])
if ready then
  fields[#fields + 1] = 'deadline'
  fields[#fields + 1] = fmt(deadline)
end
if msg_id ~= '' then
  fields[#fields + 1] = 'mid'
  fields[#fields + 1] = msg_id
end
local nhops = tonumber(ARGV[9])
for h = 0, nhops - 1 do
  fields[#fields + 1] = 'h:' .. ARGV[10 + 2 * h]
  fields[#fields + 1] = ARGV[11 + 2 * h]
end
redis.call('HSET', job_key(id), unpack(fields))
redis.call('SET', payload_key(id), payload)
redis.call('ZADD', K_WAITING, now, id)
redis.call('RPUSH', lk, id)
if ready then
  redis.call('ZADD', K_READY, deadline, key)
  wake(1)
end
count('enqueued', 1, now)
redis.call('HINCRBY', PREFIX .. 'mon:total', 'enq', 1)
local fine = PREFIX .. 'mon:10s:' .. math.floor(now / 10000)
if redis.call('HINCRBY', fine, 'enq', 1) == 1 then
  redis.call('EXPIRE', fine, 7200)
end
emit('enqueued', id, key)
return {id, 1}
