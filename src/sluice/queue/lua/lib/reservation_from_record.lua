-- lib/reservation_from_record.lua: the answer to a repeated reservation call, read afresh
-- from its record (reservation_record).
--!include lib/keys.lua
--!include lib/job_key.lua
--!include lib/payload_key.lua
--!include lib/emit.lua
--!include lib/wake.lua
--!include lib/requeue_head.lua
--!include lib/ready_again.lua

-- The caller never saw the first answer, so none of these jobs has started. Those still
-- leased to it under the same token get a fresh lease (from now: the caller's clock starts
-- when this answer arrives); those whose lease ran out meanwhile go back to the head of
-- their lanes without an attempt charged (as release.lua), since they never ran; those
-- recovered by someone else are theirs.
local function reservation_from_record(record, now, lease_ms)
  local status, retry, refs = string.match(record, '^([^|]*)|([^|]*)|(.*)$')
  local out = {status, tonumber(retry)}
  local expired = {}
  for id, token in string.gmatch(refs, '([^:,]+):([^,]+)') do
    local jk = job_key(id)
    local tok, state = unpack(redis.call('HMGET', jk, 'token', 'state'))
    local lease = tonumber(redis.call('ZSCORE', K_ACTIVE, id))
    if state == 'active' and tok == token and lease then
      if lease > now then
        redis.call('ZADD', K_ACTIVE, 'XX', now + lease_ms, id)
        local fields = redis.call('HGETALL', jk)
        fields[#fields + 1] = 'payload'
        fields[#fields + 1] = redis.call('GET', payload_key(id)) or 'null'
        out[#out + 1] = fields
      else
        expired[#expired + 1] = id
      end
    end
  end
  for i = #expired, 1, -1 do
    local id = expired[i]
    local jk = job_key(id)
    local key, pf = unpack(redis.call('HMGET', jk, 'key', 'pf'))
    redis.call('ZREM', K_ACTIVE, id)
    if pf ~= '1' then
      redis.call('HINCRBY', jk, 'attempt', -1)
    end
    requeue_head(id, key, now)
    ready_again(key, jk, now)
    emit('released', id, key, 'reply lost')
  end
  if #expired > 0 then wake(1) end
  return out
end
