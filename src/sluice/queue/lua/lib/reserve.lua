-- lib/reserve.lua: the reservation itself, shared by reserve.lua and complete.lua (which
-- reserves the next jobs in the same call as it acknowledges the finished ones).
--!include lib/keys.lua
--!include lib/job_key.lua
--!include lib/lane_key.lua
--!include lib/payload_key.lua
--!include lib/fmt.lua
--!include lib/emit_job.lua
--!include lib/count.lua
--!include lib/promote_delayed.lua
--!include lib/take_batch.lua
--!include lib/next_due.lua
--!include lib/fair_select.lua

-- Reserve up to `want` lanes to start now and up to `prefetch` more for the worker's
-- prefetch buffer, earliest deadline first, within the global rate limit: from each, its
-- head job, or with batch_max > 1 up to that many of its waiting jobs as one batch (a burst
-- answered in one turn; one start for the rate limit; take_batch: a job of a turn that
-- failed goes alone). Jobs to start now are charged an attempt; prefetched ones are marked
-- `pf` and charged when they start (charge_starts). Nothing is prefetched under a rate
-- limit (the limiter counts reservations as starts) or fairness caps. With a cap (meta
-- acct_concurrency, acct_rate, inbox_concurrency, inbox_rate) the lanes come from
-- fair_select instead of ZPOPMIN. `opts` are the worker's reserve_options. Returns
-- {status, retry_after_ms, job...} where status is 'ok', 'paused' or 'rate' and each job
-- is its HGETALL field list plus its payload; and the "id:token" of each job reserved
-- (reservation_record keeps them). The `reserved` event's info is "worker|token", with
-- "|p" for a prefetched job.
--
-- One function on purpose: this is the hottest path there is, and each job is read once and
-- written once; what changed is written into the fields the worker gets as well.
local function reserve(want, prefetch, opts, now)
  local lease_ms, worker, batch_max = opts.lease_ms, opts.worker, opts.batch
  local default_rate, guard_ms = opts.default_rate, opts.guard_ms
  -- One read of the live settings: pause, rate limit, and the caps of tenant fairness
  -- (lib/fair_select.lua; all absent = off, the plain ZPOPMIN below).
  local paused, live_rate, acct_conc, acct_rate, inbox_conc, inbox_rate = unpack(redis.call(
    'HMGET', K_META, 'paused', 'rate_limit', 'acct_concurrency', 'acct_rate',
    'inbox_concurrency', 'inbox_rate'))
  if paused == '1' then
    return {'paused', 0}, {}
  end
  promote_delayed(now)
  local rate = tonumber(live_rate or default_rate)
  local caps = {conc = tonumber(acct_conc) or 0, rate = tonumber(acct_rate) or 0,
    inbox_conc = tonumber(inbox_conc) or 0, inbox_rate = tonumber(inbox_rate) or 0}
  local fair = caps.conc > 0 or caps.rate > 0 or caps.inbox_conc > 0 or caps.inbox_rate > 0
  -- Nothing is prefetched under a rate limit (the limiter counts reservations as starts) or
  -- under fairness caps (a buffered turn holds its account's share as a running one does).
  if rate > 0 or fair then prefetch = 0 end
  if want + prefetch <= 0 then
    return {'ok', 0}, {}
  end
  local allow = want + prefetch
  local window = 1000 + guard_ms
  if rate > 0 then
    redis.call('ZREMRANGEBYSCORE', K_RATE, '-inf', now - window)
    local used = redis.call('ZCARD', K_RATE)
    if used >= rate then
      local oldest = redis.call('ZRANGE', K_RATE, 0, 0, 'WITHSCORES')
      return {'rate', math.max(1, math.ceil(tonumber(oldest[2]) + window - now))}, {}
    end
    allow = math.min(want, rate - used)
  end
  local popped
  if fair then
    popped = fair_select(allow, now, caps)
  else
    popped = redis.call('ZPOPMIN', K_READY, allow)
  end
  local out, refs = {'ok', 0}, {}
  local started = 0
  -- Formatted once per call, and the leases, the waiting index, the lanes in flight and the
  -- payloads written or read once per call for all its jobs (one ZADD, ZREM, HSET and MGET
  -- with many members, not one each per job).
  local now_s, expiry = fmt(now), fmt(now + lease_ms)
  local leases, taken, lanes, payloads = {}, {}, {}, {}
  for i = 1, #popped, 2 do
    local key = popped[i]
    -- The lane's score is its head's deadline (make_ready, ready_again, enqueue): written
    -- into the leader here, with its other changes.
    local deadline = fmt(tonumber(popped[i + 1]))
    local members = take_batch(lane_key(key), batch_max)
    if #members > 0 then
      local leader = members[1]
      local buffered = started >= want
      lanes[#lanes + 1], lanes[#lanes + 2] = key, leader
      for n, member in ipairs(members) do
        local jk = job_key(member)
        -- Read once, write once (the hot path): the token is the reservation count, and
        -- what changed is written into the fields the worker gets as well.
        local fields = redis.call('HGETALL', jk)
        local at = {} -- field name -> index of its value in `fields`
        for f = 1, #fields, 2 do
          at[fields[f]] = f + 1
        end
        local rsv = tonumber(fields[at.rsv or 0]) or 0
        local attempt = tonumber(fields[at.attempt or 0]) or 0
        local token = tostring(rsv + 1)
        refs[#refs + 1] = member .. ':' .. token
        -- A waiting job has no batch links (requeue_head, entomb): only this
        -- reservation's are set.
        local changed = {'state', 'active', 'h:reserved', now_s, 'worker', worker,
          'token', token, 'rsv', token}
        if buffered then
          changed[#changed + 1], changed[#changed + 2] = 'pf', '1'
        else
          changed[#changed + 1], changed[#changed + 2] = 'attempt', tostring(attempt + 1)
        end
        if n == 1 then
          changed[#changed + 1], changed[#changed + 2] = 'deadline', deadline
        end
        if n > 1 then
          changed[#changed + 1], changed[#changed + 2] = 'batch', leader
        elseif #members > 1 then
          changed[#changed + 1], changed[#changed + 2] = 'members', table.concat(members, ',')
        end
        redis.call('HSET', jk, unpack(changed))
        leases[#leases + 1], leases[#leases + 2] = expiry, member
        taken[#taken + 1] = member
        if rate > 0 and n == 1 then
          redis.call('ZADD', K_RATE, now, member .. ':' .. token)
        end
        if buffered then
          emit_job('reserved', member, key, worker .. '|' .. token .. '|p')
        else
          emit_job('reserved', member, key, worker .. '|' .. token)
        end
        for c = 1, #changed, 2 do
          local i = at[changed[c]]
          if i then
            fields[i] = changed[c + 1]
          else
            fields[#fields + 1], fields[#fields + 2] = changed[c], changed[c + 1]
          end
        end
        fields[#fields + 1] = 'payload' -- its value from the MGET below
        out[#out + 1] = fields
        payloads[#payloads + 1] = payload_key(member)
      end
      started = started + 1
    end
  end
  if #taken > 0 then
    redis.call('HSET', K_INFLIGHT, unpack(lanes))
    redis.call('ZADD', K_ACTIVE, unpack(leases))
    redis.call('ZREM', K_WAITING, unpack(taken))
    local bodies = redis.call('MGET', unpack(payloads))
    for n = 1, #payloads do
      local fields = out[2 + n]
      fields[#fields + 1] = bodies[n] or 'null'
    end
  end
  count('reserved', started, now)
  if started == 0 then
    out[2] = next_due(now)
  end
  return out, refs
end
