-- lib/enqueue_one.lua: add one message to the tail of its conversation's lane
-- (enqueue.lua: one message per call; enqueue_batch.lua: several in one call).
--!include lib/keys.lua
--!include lib/job_key.lua
--!include lib/payload_key.lua
--!include lib/lane_key.lua
--!include lib/request_key.lua
--!include lib/replayed.lua
--!include lib/fmt.lua
--!include lib/emit_job.lua

-- The message's arguments start at a[i]: request id ('' = none), message id ('' = none),
-- conversation key, payload (JSON), priority class, SLA target of the class (ms) or
-- "target/own" (own: ms from now to this message's own deadline when it heads an idle
-- lane at once, e.g. its customer has been waiting since an earlier line, or an SLA policy
-- promises less; docs/priorities.md; a later head still counts its class target), max
-- attempts, dedupe record TTL (ms), the hop count n with the layout guard ("n", or
-- "n|epoch|" / "n|epoch|c" from a partitioned queue), n x (hop name, epoch ms), then the
-- trace context ('' or absent = none; stored as `tp`). `now` is the call's clock (ms);
-- `next_id()` gives the next job number (INCR of `seq`, or one of a block the caller took).
-- With `later` (enqueue_batch.lua) the job's payload and its entry in the waiting index are
-- appended to later.payloads (key, value) and later.waiting (score, id) for the caller to
-- write once for the call (nothing in between reads them); without, they are written here.
--
-- A message reaching Redis twice (a reply lost, the call re-sent) is added once and
-- answered the same both times: with a message id the dedupe record catches the repeat and
-- the job's `rq` (the request id that created it) tells a repeat from a duplicate delivery;
-- without one the answer is kept under the request id (lib/request_key.lua). Each record is
-- one SET NX (GET only when it exists: a duplicate or a repeat), so a duplicate leaves a
-- gap in the job id sequence: ids are unique, not dense.
--
-- The layout guard (docs/partitions.md): refused with status -1 unless the partition's meta
-- `epoch` is the caller's (its layout is current), and with 'c' (a conversation staying on
-- its old partition during a resize) with -2 unless the conversation has a lane or a job in
-- flight here. Refusals write nothing; a duplicate or a repeat is answered before the guard.
--
-- Returns the job id ('' when refused), the status (1 new job or a repeat of the call that
-- made it, 0 a duplicate message id: the first job's id, -1 / -2 refused), true if a job was
-- created, true if its lane became ready (the caller wakes a worker, once per call: wake),
-- and the index of the argument after this message's trace context.
local function enqueue_one(a, i, now, next_id, later)
  local rid, msg_id, key, payload = a[i], a[i + 1], a[i + 2], a[i + 3]
  local target, own = string.match(a[i + 5], '^(-?[%d.]+)/?(-?[%d.]*)$')
  local nhops, epoch, cond = string.match(a[i + 8], '^(%d+)|?(%d*)|?(c?)$')
  nhops = tonumber(nhops)
  local after = i + 10 + 2 * nhops
  local dedupe_key = PREFIX .. 'dedupe:' .. msg_id
  local lk = lane_key(key)
  local first = nil -- the job a duplicate or repeated message id names
  if epoch ~= '' then
    -- Read before the guard, which may refuse (and a refusal writes nothing).
    if msg_id ~= '' then
      first = redis.call('GET', dedupe_key)
    else
      local earlier = replayed(rid)
      if earlier then return earlier, 1, false, false, after end
    end
    if not first then
      if redis.call('HGET', K_META, 'epoch') ~= epoch then
        return '', -1, false, false, after
      end
      if cond == 'c' and redis.call('LLEN', lk) == 0
          and redis.call('HEXISTS', K_INFLIGHT, key) == 0 then
        return '', -2, false, false, after
      end
    end
  end
  local id = nil
  if not first then
    id = tostring(next_id())
    -- Partition p >= 1 of a partitioned queue (prefix "sluice:{name#p}:") marks its ids
    -- "<p>_<seq>", so ids are unique across partitions and name theirs; partition 0 (every
    -- unpartitioned queue) keeps plain numbers (docs/partitions.md).
    local part = string.match(PREFIX, '#(%d+)}:$')
    if part then id = part .. '_' .. id end
    if msg_id ~= '' then
      if not redis.call('SET', dedupe_key, id, 'NX', 'PX', a[i + 7]) then
        first = redis.call('GET', dedupe_key)
      end
    elseif rid ~= '' then
      local rk = request_key(rid)
      if not redis.call('SET', rk, id, 'NX', 'PX', REQUEST_TTL_MS) then
        return redis.call('GET', rk), 1, false, false, after
      end
    end
  end
  if first then
    if rid ~= '' and redis.call('HGET', job_key(first), 'rq') == rid then
      return first, 1, false, false, after
    end
    return first, 0, false, false, after
  end

  -- A lane that is empty and idle becomes ready now, with this job as its head; otherwise
  -- its running job's end (or its retry) makes the next head ready, so order holds. The
  -- job joins its lane first: RPUSH's answer (the lane's new length) tells whether it was
  -- empty, one command less than asking LLEN before.
  local ready = redis.call('RPUSH', lk, id) == 1 and redis.call('HEXISTS', K_INFLIGHT, key) == 0
  local fields = {'id', id, 'key', key, 'prio', a[i + 4], 'target', target,
    'max', a[i + 6], 'attempt', 0, 'state', 'waiting', 'h:enqueued', fmt(now)}
  local deadline = now + tonumber(own ~= '' and own or target)
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
  for h = i + 9, i + 8 + 2 * nhops, 2 do
    fields[#fields + 1] = 'h:' .. a[h]
    fields[#fields + 1] = a[h + 1]
  end
  local tp = a[after - 1]
  if tp and tp ~= '' then
    fields[#fields + 1] = 'tp'
    fields[#fields + 1] = tp
  end
  redis.call('HSET', job_key(id), unpack(fields))
  if later then
    local p, w = later.payloads, later.waiting
    p[#p + 1], p[#p + 2] = payload_key(id), payload
    w[#w + 1], w[#w + 2] = now, id
  else
    redis.call('SET', payload_key(id), payload)
    redis.call('ZADD', K_WAITING, now, id)
  end
  if ready then
    redis.call('ZADD', K_READY, deadline, key)
  end
  emit_job('enqueued', id, key)
  return id, 1, true, ready, after
end
