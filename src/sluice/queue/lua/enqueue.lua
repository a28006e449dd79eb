-- enqueue.lua: add one message to the tail of its conversation's lane.
--
-- The message's steps are lib/enqueue_one.lua's (repeat checks, layout guard, the job's
-- fields, its lane); enqueue_batch.lua adds several messages the same way in one call.
--
-- KEYS: 1 the queue's meta key (see lib/keys.lua; the other keys derive from the prefix).
-- ARGV: 1 prefix, 2 request id ('' = none), 3 message id ('' = none), 4 conversation key,
--       5 payload (JSON), 6 priority class, 7 SLA target of the class (ms), 8 max attempts,
--       9 dedupe record TTL (ms), 10 n hop pairs (a partitioned queue adds its layout
--       guard: "n|epoch|" or "n|epoch|c", see lib/enqueue_one.lua), then n x (hop name,
--       epoch ms), then optionally the message's trace context (W3C traceparent, stored as
--       `tp`; sent only while tracing is on, see sluice/tracing)
-- Returns {job id, 1} for a new job ("<p>_<n>" on partition p >= 1) or a repeat of the call
-- that made it, {first job id, 0} for a duplicate message id, {'', -1} / {'', -2} when the
-- layout guard refuses it (nothing written).
-- Events: enqueued (not for a repeat or a duplicate).
--!include lib/keys.lua
--!include lib/now_ms.lua
--!include lib/enqueue_one.lua
--!include lib/count_enqueued.lua
--!include lib/wake.lua

local function next_id()
  return redis.call('INCR', K_SEQ)
end

local now = now_ms()
local id, status, created, ready = enqueue_one(ARGV, 2, now, next_id)
if ready then wake(1) end
if created then count_enqueued(1, now) end
return {id, status}
