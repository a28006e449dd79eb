-- lib/recover_expired.lua: leases that ran out belong to workers that died or stalled: their
-- jobs go back to the head of their lanes (attempt + 1 was already counted when they were
-- reserved), or to the dead letters when that was the last attempt.
--!include lib/keys.lua
--!include lib/job_key.lua
--!include lib/emit.lua
--!include lib/count.lua
--!include lib/wake.lua
--!include lib/batch_of.lua
--!include lib/bury_exhausted.lua
--!include lib/requeue_turn.lua
--!include lib/requeue_solo.lua
--!include lib/ready_again.lua

-- A batch is recovered as a whole, in lane order, on its leader's attempt count. The first
-- time, it is retried as the batch it was: an expired lease is most often its worker's death
-- (a deploy, a crash, a kill), not its lines' fault, and retried one line at a time a burst
-- would cost a turn per line, each with the reply-id looks of a recovered turn (a second look
-- a second later for a reply that may still land), enough to spend the SLA budget and hand
-- the customer to a human (the killed-worker e2e test saw it). A turn that had been tried
-- before (its leader's attempt > 1: it expires again) is retried one job at a time like a
-- failed one (requeue_solo): a line that kills its worker cannot take the others down with
-- it. On the last attempt only the leading run of members without attempts left is buried
-- (bury_exhausted). At most `limit` expired leases are looked at per call; `tally`
-- (new_tally; nil = monitoring off) counts the dead.
local function recover_expired(now, limit, tally)
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
            'recovered', tally)
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
