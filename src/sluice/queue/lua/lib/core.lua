-- lib/core.lua: helpers shared by every Sluice script. It is included textually at the top
-- of each script by sluice.queue.scripts (a line "--!include lib/core.lua"), so every
-- script still runs as ONE atomic EVALSHA.
--
-- KEYS[1] is the queue's `meta` key for every script: it routes the call to the queue's
-- cluster slot. The other keys are built from the prefix in ARGV[1] (as BullMQ builds its
-- per-job keys): they share the queue's hash tag, so they live in that same slot, and a
-- call sends one key instead of twelve (measurably cheaper per job). The queue's keys:
--   ready      ZSET  conversation key -> deadline (ms): lanes whose head job may start
--   delayed    ZSET  conversation key -> ms at which its head (a retry) may start again
--   inflight   HASH  conversation key -> id of the one job (batch leader) of that lane running
--   active     ZSET  job id -> lease expiry (ms)
--   waiting    ZSET  job id -> enqueued at (ms): every job still sitting in a lane
--   dead       ZSET  job id -> dead-lettered at (ms)
--   completed  ZSET  job id -> completed at (ms), trimmed to the retention
--   meta       HASH  paused, rate_limit, concurrency, profile (live settings for all workers)
--   rate       ZSET  job starts of the last second (the global sliding-window limit)
--   wake       LIST  wake-up tokens for idle workers blocked in BLPOP
--   events     STREAM capped log of every transition
--   seq        STRING job id counter
--   control    CHANNEL pause / resume / drain / cancel / rate, so workers act on their
--              prefetch buffers at once (PUBLISH, nothing stored)
-- ARGV[1] is always the key prefix "sluice:{queue}:". Per-job and per-lane keys are built
-- from it (job:<id>, payload:<id>, lane:<key>, dedupe:<message id>, stats:<unix second>); the prefix
-- carries the queue's hash tag, so every key lives in the same cluster slot.
--
-- Times are milliseconds since the epoch from the Redis server clock (TIME), so every
-- worker process on every host agrees on one clock for leases, deadlines and the rate limit.

local PREFIX = ARGV[1]
local K_READY, K_DELAYED = PREFIX .. 'ready', PREFIX .. 'delayed'
local K_INFLIGHT, K_ACTIVE = PREFIX .. 'inflight', PREFIX .. 'active'
local K_WAITING, K_DEAD, K_COMPLETED = PREFIX .. 'waiting', PREFIX .. 'dead', PREFIX .. 'completed'
local K_META, K_RATE, K_WAKE = KEYS[1], PREFIX .. 'rate', PREFIX .. 'wake'
local K_EVENTS, K_SEQ = PREFIX .. 'events', PREFIX .. 'seq'
local K_CONTROL = PREFIX .. 'control'

local EVENTS_MAXLEN = 10000 -- approximate cap of the event stream
local WAKE_MAX = 32          -- more tokens than idle workers only cause empty wake-ups
local STATS_TTL_S = 7200     -- per-second counters are kept two hours

-- Set by lib/monitor.lua when a script includes it: lets shared helpers (entomb) feed the
-- monitoring aggregates without core depending on monitor.
local observe_outcome = nil

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end

-- Lua's tostring keeps 14 digits, too few for epoch milliseconds with a fraction.
local function fmt(x)
  return string.format('%.3f', x)
end

local function job_key(id)
  return PREFIX .. 'job:' .. id
end

-- The payload lives beside the job hash so that the hash keeps only small values and
-- stays in Redis's compact listpack encoding (a payload over 64 bytes would turn the
-- whole hash into a hashtable, about 800 bytes more per job).
local function payload_key(id)
  return PREFIX .. 'payload:' .. id
end

local function lane_key(key)
  return PREFIX .. 'lane:' .. key
end

local function emit(kind, id, key, info)
  if info then
    redis.call('XADD', K_EVENTS, 'MAXLEN', '~', EVENTS_MAXLEN, '*',
      'type', kind, 'job', id or '', 'key', key or '', 'info', info)
  else
    redis.call('XADD', K_EVENTS, 'MAXLEN', '~', EVENTS_MAXLEN, '*',
      'type', kind, 'job', id or '', 'key', key or '')
  end
end

local function count(field, n, now)
  if n == 0 then return end
  local k = PREFIX .. 'stats:' .. math.floor(now / 1000)
  -- The first increment of a field (result == n) sets the TTL: every key gets one when
  -- it is created, without an EXPIRE on every call.
  if redis.call('HINCRBY', k, field, n) == n then
    redis.call('EXPIRE', k, STATS_TTL_S)
  end
end

local function wake(n)
  if n <= 0 then return end
  if n > WAKE_MAX then n = WAKE_MAX end
  local length = 0
  for _ = 1, n do
    length = redis.call('LPUSH', K_WAKE, '1')
  end
  if length > WAKE_MAX then
    redis.call('LTRIM', K_WAKE, 0, WAKE_MAX - 1)
  end
end

-- The lane's head becomes eligible now: its deadline is its class's SLA target from now
-- (earliest deadline first across conversations). Returns true if the lane has a head.
local function make_ready(key, now)
  local head = redis.call('LINDEX', lane_key(key), 0)
  if not head then return false end
  local jk = job_key(head)
  local deadline = now + tonumber(redis.call('HGET', jk, 'target'))
  redis.call('HSET', jk, 'deadline', fmt(deadline))
  redis.call('ZADD', K_READY, deadline, key)
  return true
end

-- A retried or recovered job keeps the deadline it already had: its customer has been
-- waiting since then, so it must not queue behind later arrivals.
local function ready_again(key, jk, now)
  local deadline, target = unpack(redis.call('HMGET', jk, 'deadline', 'target'))
  redis.call('ZADD', K_READY, tonumber(deadline) or (now + tonumber(target)), key)
end

-- The running job of a lane has ended (completed or dead): the lane moves on.
local function advance_lane(key, id, now)
  if redis.call('HGET', K_INFLIGHT, key) == id then
    redis.call('HDEL', K_INFLIGHT, key)
  end
  if make_ready(key, now) then wake(1) end
end

-- Move a job to the dead-letter set. Its lane does not move on here: the caller buries all
-- it has to, then calls advance_lane once. The `solo` mark and its batch links go: a dead
-- letter retried by an operator queues as a new arrival.
local function entomb(id, key, err, now)
  local jk = job_key(id)
  redis.call('HSET', jk, 'state', 'dead', 'err', err, 'h:dead', fmt(now))
  redis.call('HDEL', jk, 'token', 'solo', 'pf', 'batch', 'members')
  redis.call('PERSIST', jk)
  redis.call('PERSIST', payload_key(id))
  redis.call('ZADD', K_DEAD, now, id)
  count('dead', 1, now)
  if observe_outcome then observe_outcome('dead') end
  emit('dead', id, key, err)
end

-- Tell every worker of the queue (their control subscription) that `what` happened.
local function announce(what)
  redis.call('PUBLISH', K_CONTROL, what)
end

-- A job reserved into a worker's prefetch buffer (`pf`) has not started: its attempt is
-- charged only when it does, so a buffer lost in a crash or handed back costs no attempt.
-- `refs` is a flat list of job id, token pairs; one `started` event lists the jobs charged
-- ("worker|id:token,id:token,..."; one event per call, not per job: it is on the hot path
-- of every prefetched job).
local function charge_starts(refs)
  local charged, worker = {}, nil
  for i = 1, #refs, 2 do
    local id, token = refs[i], refs[i + 1]
    local jk = job_key(id)
    local tok, state, pf, owner, attempt = unpack(redis.call('HMGET', jk, 'token', 'state',
      'pf', 'worker', 'attempt'))
    if state == 'active' and tok == token and pf == '1' then
      -- One write: `pf` 0 means "prefetched, started" (every reader asks for '1').
      redis.call('HSET', jk, 'attempt', tonumber(attempt) + 1, 'pf', '0')
      charged[#charged + 1] = id .. ':' .. token
      worker = worker or owner
    end
  end
  if #charged > 0 then
    emit('started', nil, nil, (worker or '') .. '|' .. table.concat(charged, ','))
  end
end

-- The refs of ARGV[first .. first + 2n - 1] (n job id, token pairs) as charge_starts takes them.
local function refs_at(first, n)
  local refs = {}
  for i = 0, 2 * n - 1 do
    refs[#refs + 1] = ARGV[first + i]
  end
  return refs
end

-- Put a reserved job back at the head of its lane (its deadline unchanged). It leaves its
-- batch: a job waiting in a lane never has `batch` or `members` (reserve relies on it).
local function requeue_head(id, key, now)
  local jk = job_key(id)
  redis.call('HSET', jk, 'state', 'waiting')
  redis.call('HDEL', jk, 'token', 'pf', 'batch', 'members')
  redis.call('LPUSH', lane_key(key), id)
  if redis.call('HGET', K_INFLIGHT, key) == id then
    redis.call('HDEL', K_INFLIGHT, key)
  end
  redis.call('ZADD', K_WAITING, tonumber(redis.call('HGET', jk, 'h:enqueued')), id)
end

-- Put the jobs of a turn that failed or whose lease expired (`ids`, in lane order) back at
-- the head of their lane, in order; `fields` are field/value pairs to set on each job.
local function requeue_turn(ids, key, now, fields)
  for i = #ids, 1, -1 do
    requeue_head(ids[i], key, now)
    redis.call('HSET', job_key(ids[i]), unpack(fields))
  end
end

-- requeue_turn, and each job marked `solo`: from now on each is reserved alone (take_batch),
-- until it completes or is dead-lettered. One line that makes its handler fail every time
-- would otherwise drag the innocent lines of its burst through every retry and into the
-- dead letters with it; retried alone, the innocent lines are answered and the poison uses
-- up only its own attempts. (A hand-back at shutdown is no failure: release.lua does not
-- mark.)
local function requeue_solo(ids, key, now, fields)
  local marked = {'solo', '1'}
  for _, v in ipairs(fields) do
    marked[#marked + 1] = v
  end
  requeue_turn(ids, key, now, marked)
end

-- A turn's last attempt ended: a retryable failure (`kind` 'retry') or an expired lease
-- (`kind` 'recovered'), with its leader's attempts used up, so it cannot be retried as it
-- was. Only the leading run of members that used up their own attempts is buried. The
-- members after it (a line with attempts left, e.g. one enqueued with a larger max) go back
-- to the head of the lane, solo (their turn is over: each is retried on its own), with the
-- error and hops a normal retry or recovery sets (a recovery stamps no `failed` hop: nothing
-- failed), logged as `kind` and counted (retried / recovered), one event and one count per
-- job.
--
-- Survivors are a suffix by construction, so the conversation's order holds: the first
-- member with attempts left ends the buried run, and every member after it survives too,
-- even one whose own attempts are used up (`max` is stored per job, so this happens only when
-- SLUICE_MAX_ATTEMPTS changed between enqueues): it gets an attempt alone and is buried after
-- it on its own count, rather than dead-lettered while an earlier line still waits. (Attempt
-- counts never rise from a lane's head to its tail, so with one `max` the exhausted members
-- are a prefix anyway.)
--
-- The first survivor becomes ready with the turn's deadline (its leader's), as the turn would
-- on a normal retry (ready_again): its customer has been waiting since then. With no
-- survivor the lane moves on, and its next head gets a fresh deadline (advance_lane).
local function bury_exhausted(ids, key, err, now, kind)
  if #ids == 0 then return end
  local dead, survivors = {}, {}
  for _, id in ipairs(ids) do
    local attempt, max = unpack(redis.call('HMGET', job_key(id), 'attempt', 'max'))
    if #survivors == 0 and tonumber(attempt) >= tonumber(max) then
      dead[#dead + 1] = id
    else
      survivors[#survivors + 1] = id
    end
  end
  for _, id in ipairs(dead) do
    entomb(id, key, err, now)
  end
  if #survivors == 0 then
    advance_lane(key, ids[1], now)
    return
  end
  if redis.call('HGET', K_INFLIGHT, key) == ids[1] then
    redis.call('HDEL', K_INFLIGHT, key)
  end
  if kind == 'retry' then
    requeue_solo(survivors, key, now, {'err', err, 'h:failed', fmt(now)})
    for _, id in ipairs(survivors) do
      if observe_outcome then observe_outcome('retry') end
      emit('retry', id, key, err)
    end
    count('retried', #survivors, now)
  else
    requeue_solo(survivors, key, now, {'err', 'lease expired'})
    for _, id in ipairs(survivors) do
      emit('recovered', id, key)
    end
    count('recovered', #survivors, now)
  end
  local first = job_key(survivors[1])
  local deadline = redis.call('HGET', job_key(ids[1]), 'deadline')
  if deadline then
    redis.call('HSET', first, 'deadline', deadline)
  end
  ready_again(key, first, now)
  wake(1)
end

-- The jobs reserved together with `id` (a burst of one conversation, answered in one
-- turn), in lane order. The first is the batch leader: it holds the lane lock and lists
-- the others in its `members` field; the others name it in their `batch` field.
local function batch_of(id)
  local jk = job_key(id)
  local leader = redis.call('HGET', jk, 'batch') or id
  local members = redis.call('HGET', job_key(leader), 'members')
  if not members then
    return {leader}
  end
  local ids = {}
  for member in string.gmatch(members, '[^,]+') do
    ids[#ids + 1] = member
  end
  return ids
end

-- The turn of conversation `key` that sits in a worker's prefetch buffer (reserved, not
-- started: `pf`) goes with the conversation's waiting jobs when they are drained or
-- cancelled, so it never starts; the worker learns it from the control channel (or its
-- next heartbeat) and drops it. Returns how many jobs were removed.
local function discard_prefetched(key, reason)
  local leader = redis.call('HGET', K_INFLIGHT, key)
  if not leader or redis.call('HGET', job_key(leader), 'pf') ~= '1' then
    return 0
  end
  local ids = batch_of(leader)
  for _, id in ipairs(ids) do
    redis.call('ZREM', K_ACTIVE, id)
    redis.call('DEL', job_key(id), payload_key(id))
    emit('cancelled', id, key, reason)
  end
  redis.call('HDEL', K_INFLIGHT, key)
  return #ids
end

-- Leases that ran out belong to workers that died or stalled: their jobs go back to the
-- head of their lanes (attempt + 1 was already counted when they were reserved), or to
-- the dead letters when that was the last attempt.
-- A batch is recovered as a whole, in lane order, on its leader's attempt count. The first
-- time, it is retried as the batch it was: an expired lease is most often its worker's death
-- (a deploy, a crash, a kill), not its lines' fault, and retried one line at a time a burst
-- would cost a turn per line, each with the reply-id looks of a recovered turn (a second look
-- a second later for a reply that may still land), enough to spend the SLA budget and hand
-- the customer to a human (the killed-worker e2e test saw it). A turn that had been tried
-- before (its leader's attempt > 1: it expires again) is retried one job at a time like a
-- failed one (requeue_solo): a line that kills its worker cannot take the others down with
-- it. On the last attempt only the leading run of members without attempts left is buried
-- (bury_exhausted).
local function recover_expired(now, limit)
  local ids = redis.call('ZRANGEBYSCORE', K_ACTIVE, '-inf', now, 'LIMIT', 0, limit)
  local seen = {}
  for _, expired in ipairs(ids) do
    if not seen[expired] then
      local group = batch_of(expired)
      local live = {}
      for _, id in ipairs(group) do
        seen[id] = true
        if redis.call('ZREM', K_ACTIVE, id) == 1 then
          live[#live + 1] = id
        end
      end
      local leader = group[1]
      local key, attempt, max = unpack(redis.call('HMGET', job_key(leader), 'key', 'attempt',
        'max'))
      if key then
        if tonumber(attempt) >= tonumber(max) then
          bury_exhausted(live, key, 'lease expired on the last attempt (' .. attempt .. ')', now,
            'recovered')
        else
          if tonumber(attempt) > 1 then
            requeue_solo(live, key, now, {'err', 'lease expired'})
          else
            requeue_turn(live, key, now, {'err', 'lease expired'})
          end
          for _, id in ipairs(live) do
            emit('recovered', id, key)
          end
          ready_again(key, job_key(leader), now)
          count('recovered', #live, now)
        end
      end
    end
  end
  if #ids > 0 then wake(#ids) end
end

-- Lanes whose retry backoff has passed become ready again.
local function promote_delayed(now)
  local due = redis.call('ZRANGEBYSCORE', K_DELAYED, '-inf', now, 'LIMIT', 0, 100)
  for _, key in ipairs(due) do
    redis.call('ZREM', K_DELAYED, key)
    local head = redis.call('LINDEX', lane_key(key), 0)
    if head then
      local jk = job_key(head)
      redis.call('HSET', jk, 'state', 'waiting')
      ready_again(key, jk, now)
    end
  end
end

-- How long an idle worker may block before something is due (a delayed retry): 0 = nothing.
local function next_due(now)
  local first = redis.call('ZRANGE', K_DELAYED, 0, 0, 'WITHSCORES')
  if #first == 0 then return 0 end
  return math.max(1, math.ceil(tonumber(first[2]) - now))
end

-- Take the jobs a lane's next turn answers off the lane: its head, and with batch_max > 1
-- up to batch_max - 1 jobs behind it (a burst). A job marked `solo` (a turn of it failed or
-- expired again: requeue_solo) is taken alone when it is the head, and ends a batch before
-- it otherwise. Returns the ids in lane order (none for an empty lane).
local function take_batch(lk, batch_max)
  if batch_max <= 1 then
    local id = redis.call('LPOP', lk)
    if id then return {id} end
    return {}
  end
  local ids = redis.call('LRANGE', lk, 0, batch_max - 1)
  if #ids > 1 then
    for n, id in ipairs(ids) do
      if redis.call('HEXISTS', job_key(id), 'solo') == 1 then
        for i = #ids, math.max(1, n - 1) + 1, -1 do
          ids[i] = nil
        end
        break
      end
    end
  end
  if #ids > 0 then
    redis.call('LTRIM', lk, #ids, -1)
  end
  return ids
end

-- Reserve up to `want` lanes to start now and up to `prefetch` more for the worker's
-- prefetch buffer, earliest deadline first, within the global rate limit: from each, its
-- head job, or with batch_max > 1 up to that many of its waiting jobs as one batch (a burst
-- answered in one turn; one start for the rate limit; take_batch: a job of a turn that
-- failed goes alone). Jobs to start now are charged an attempt; prefetched ones are marked
-- `pf` and charged when they start (charge_start). Nothing is prefetched under a rate limit:
-- the limiter counts reservations as starts. Returns {status, retry_after_ms, job...} where
-- status is 'ok', 'paused' or 'rate' and each job is its HGETALL field list plus its
-- payload; and the "id:token" of each job reserved (lib/request.lua keeps them). The
-- `reserved` event's info is "worker|token", with "|p" for a prefetched job.
-- How a worker reserves, as its calls pass it: the worker id, and one string
-- "lease ms|default rate limit|rate guard ms|max leases to recover|monitoring|batch"
-- (decoded by reserve_options): the default rate limit is in jobs/s, 0 = unlimited (the
-- live value in meta.rate_limit wins); the rate guard is added to the 1 s window to absorb
-- dispatch jitter; monitoring 0/1 (dead letters from expired leases are counted); batch is
-- the most jobs of one conversation to reserve together (a job marked solo is always
-- reserved alone). One argument instead of six: the client encodes every argument of every
-- call, and these rarely change.
local function reserve_options(worker, packed)
  local lease, rate, guard, recover, monitor, batch = string.match(packed,
    '^(%d+)|(%d+)|(%d+)|(%d+)|(%d)|(%d+)$')
  if not lease then
    error('reservation options must be "lease|rate|guard|recover|monitor|batch", got ' .. packed)
  end
  return {lease_ms = tonumber(lease), worker = worker, default_rate = tonumber(rate),
    guard_ms = tonumber(guard), recover = tonumber(recover), monitor = monitor == '1',
    batch = tonumber(batch)}
end

-- A list of job refs as the worker sends it, "id:token,id:token,...", as the flat list
-- {id, token, id, token, ...} that charge_starts takes (ids and tokens are numbers).
local function parse_refs(packed)
  local refs = {}
  for id, token in string.gmatch(packed, '([^:,]+):([^,]+)') do
    refs[#refs + 1], refs[#refs + 2] = id, token
  end
  return refs
end

local function reserve(want, prefetch, opts, now)
  local lease_ms, worker, batch_max = opts.lease_ms, opts.worker, opts.batch
  local default_rate, guard_ms = opts.default_rate, opts.guard_ms
  if redis.call('HGET', K_META, 'paused') == '1' then
    return {'paused', 0}, {}
  end
  promote_delayed(now)
  local rate = tonumber(redis.call('HGET', K_META, 'rate_limit') or default_rate)
  if rate > 0 then prefetch = 0 end
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
  local popped = redis.call('ZPOPMIN', K_READY, allow)
  local out, refs = {'ok', 0}, {}
  local started = 0
  for i = 1, #popped, 2 do
    local key = popped[i]
    local members = take_batch(lane_key(key), batch_max)
    if #members > 0 then
      local leader = members[1]
      local buffered = started >= want
      redis.call('HSET', K_INFLIGHT, key, leader)
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
        local changed = {'state', 'active', 'h:reserved', fmt(now), 'worker', worker,
          'token', token, 'rsv', token}
        if buffered then
          changed[#changed + 1], changed[#changed + 2] = 'pf', '1'
        else
          changed[#changed + 1], changed[#changed + 2] = 'attempt', tostring(attempt + 1)
        end
        if n > 1 then
          changed[#changed + 1], changed[#changed + 2] = 'batch', leader
        elseif #members > 1 then
          changed[#changed + 1], changed[#changed + 2] = 'members', table.concat(members, ',')
        end
        redis.call('HSET', jk, unpack(changed))
        redis.call('ZADD', K_ACTIVE, now + lease_ms, member)
        redis.call('ZREM', K_WAITING, member)
        if rate > 0 and n == 1 then
          redis.call('ZADD', K_RATE, now, member .. ':' .. token)
        end
        if buffered then
          emit('reserved', member, key, worker .. '|' .. token .. '|p')
        else
          emit('reserved', member, key, worker .. '|' .. token)
        end
        for c = 1, #changed, 2 do
          local i = at[changed[c]]
          if i then
            fields[i] = changed[c + 1]
          else
            fields[#fields + 1], fields[#fields + 2] = changed[c], changed[c + 1]
          end
        end
        fields[#fields + 1] = 'payload'
        fields[#fields + 1] = redis.call('GET', payload_key(member)) or 'null'
        out[#out + 1] = fields
      end
      started = started + 1
    end
  end
  count('reserved', started, now)
  if started == 0 then
    out[2] = next_due(now)
  end
  return out, refs
end
