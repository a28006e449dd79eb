-- enqueue_batch.lua: add several messages, each as enqueue.lua adds one, in one call.
--
-- Queue.add sends the messages that producers handed it while its previous call was on the
-- wire in one call (a group commit: each producer still returns only once its message is
-- in Redis). Each message is checked, guarded and added on its own, in order
-- (lib/enqueue_one.lua); the call reads the clock once, takes its job numbers from `seq`
-- in one INCRBY (a block as large as the messages left; a duplicate or a refusal leaves
-- its number unused: ids are unique, not dense), writes the payloads in one MSET and the
-- waiting index in one ZADD, wakes once and writes the monitoring counters once for all
-- of them.
--
-- KEYS: 1 the queue's meta key (see lib/keys.lua; the other keys derive from the prefix).
-- ARGV: 1 prefix, 2 number of messages m, then m times enqueue.lua's arguments 2 to 10 and
--       its hops, each followed by its trace context ('' = none; always present here).
-- Returns {job id, status, job id, status, ...}: per message in order, what enqueue.lua
-- returns for it (status 1 new or a repeat, 0 duplicate, -1 / -2 refused by the guard).
-- Events: enqueued per new job (not for a repeat or a duplicate).
--!include lib/keys.lua
--!include lib/now_ms.lua
--!include lib/enqueue_one.lua
--!include lib/count_enqueued.lua
--!include lib/wake.lua

local count = tonumber(ARGV[2])
local m = 0 -- the message being added
local top, last = 0, 0 -- job numbers taken and not used yet: last + 1 .. top

local function next_id()
  if last == top then
    top = redis.call('INCRBY', K_SEQ, count - m + 1)
    last = top - (count - m + 1)
  end
  last = last + 1
  return last
end

local now = now_ms()
local out, created, readied = {}, 0, 0
local later = {payloads = {}, waiting = {}} -- written once, after the loop
local i = 3
while m < count do
  m = m + 1
  local id, status, new, ready, after = enqueue_one(ARGV, i, now, next_id, later)
  out[2 * m - 1], out[2 * m] = id, status
  if new then created = created + 1 end
  if ready then readied = readied + 1 end
  i = after
end
if created > 0 then
  redis.call('MSET', unpack(later.payloads))
  redis.call('ZADD', K_WAITING, unpack(later.waiting))
end
wake(readied)
count_enqueued(created, now)
return out
