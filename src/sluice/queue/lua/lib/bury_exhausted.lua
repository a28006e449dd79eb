-- lib/bury_exhausted.lua: a turn's last attempt ended; bury what used up its attempts and
-- retry the rest alone.
--!include lib/keys.lua
--!include lib/job_key.lua
--!include lib/fmt.lua
--!include lib/emit.lua
--!include lib/count.lua
--!include lib/wake.lua
--!include lib/entomb.lua
--!include lib/advance_lane.lua
--!include lib/requeue_solo.lua
--!include lib/ready_again.lua
--!include lib/observe_outcome.lua

-- The turn ended by a retryable failure (`kind` 'retry') or an expired lease (`kind`
-- 'recovered'), with its leader's attempts used up, so it cannot be retried as it was. Only
-- the leading run of members that used up their own attempts is buried. The members after
-- it (a line with attempts left, e.g. one enqueued with a larger max) go back to the head
-- of the lane, solo (their turn is over: each is retried on its own), with the error and
-- hops a normal retry or recovery sets (a recovery stamps no `failed` hop: nothing failed),
-- logged as `kind` and counted (retried / recovered), one event and one count per job.
-- `tally` (new_tally; nil = monitoring off) counts the dead and the retried.
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
local function bury_exhausted(ids, key, err, now, kind, tally)
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
    entomb(id, key, err, now, tally)
  end
  if #survivors == 0 then
    if advance_lane(key, ids[1], now) then wake(1) end
    return
  end
  if redis.call('HGET', K_INFLIGHT, key) == ids[1] then
    redis.call('HDEL', K_INFLIGHT, key)
  end
  if kind == 'retry' then
    requeue_solo(survivors, key, now, {'err', err, 'h:failed', fmt(now)})
    for _, id in ipairs(survivors) do
      if tally then observe_outcome(tally, 'retry') end
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
