-- limiter.lua: the global rate limit of a partitioned queue (docs/partitions.md): grant a
-- worker up to N start tokens, or take back tokens it did not use.
--
-- An unpartitioned queue limits inside reserve.lua (its `rate` zset). A partitioned one
-- reserves on several slots, so the start times live in a slot of their own, the
-- limiter's (`sluice:{name#rate}:`): a worker asks here first and then reserves at most
-- as many turns as it was granted. A grant is recorded at the Redis time it is made, and
-- at most R grants lie in any window of one second plus the guard, so starts, which
-- follow their grant within the guard, never exceed R in any second.
--
-- KEYS: 1 the limiter's meta key (`rate_limit`, the live limit; the routing key).
-- ARGV: 1 the limiter's prefix, 2 'grant' or 'return', 3 the worker's request id (a
--       repeated grant gives the same tokens back), 4 N tokens wanted (grant) or the
--       tokens to return ("m,m,..."), 5 the configured limit (jobs/s, 0 = none; the live
--       one wins), 6 the guard (ms)
-- Returns {granted, retry_after_ms, limit in force, tokens...} for a grant (limit 0: no
-- limit, every token wanted is granted and nothing is recorded); the number of tokens
-- removed for a return.
-- Events: none.
--!include lib/now_ms.lua

local prefix, op = ARGV[1], ARGV[2]
local starts = prefix .. 'rate'
if op == 'return' then
  local removed = 0
  for token in string.gmatch(ARGV[4], '[^,]+') do
    removed = removed + redis.call('ZREM', starts, token)
  end
  return removed
end
local want = tonumber(ARGV[4])
local rate = tonumber(redis.call('HGET', KEYS[1], 'rate_limit') or ARGV[5])
if rate <= 0 then
  return {want, 0, 0}
end
local rid = ARGV[3]
local record = prefix .. 'req:' .. rid
local earlier = redis.call('LRANGE', record, 0, -1)
if #earlier > 0 then
  local out = {#earlier, 0, rate}
  for _, token in ipairs(earlier) do out[#out + 1] = token end
  return out
end
local now = now_ms()
local window = 1000 + tonumber(ARGV[6])
redis.call('ZREMRANGEBYSCORE', starts, '-inf', now - window)
local used = redis.call('ZCARD', starts)
if used >= rate then
  local oldest = redis.call('ZRANGE', starts, 0, 0, 'WITHSCORES')
  return {0, math.max(1, math.ceil(tonumber(oldest[2]) + window - now)), rate}
end
local grant = math.min(want, rate - used)
local out = {grant, 0, rate}
for i = 1, grant do
  local token = rid .. '.' .. i
  redis.call('ZADD', starts, now, token)
  out[#out + 1] = token
end
if grant > 0 then
  redis.call('RPUSH', record, unpack(out, 4))
  redis.call('PEXPIRE', record, 60000)
end
return out
