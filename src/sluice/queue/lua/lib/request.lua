-- lib/request.lua: a script call that may reach Redis twice acts once.
--
-- redis-py re-sends a command whose reply was lost (a timeout, a cut connection), and a
-- worker re-sends an exchange it never got an answer for. Each state-changing call
-- carries a request id (a random string chosen by the caller, '' = none); the script keeps
-- what it answered under PREFIX .. 'req:' .. id for REQUEST_TTL_MS, and a repeated call
-- with the same id gets that answer back instead of acting again. Included after
-- lib/core.lua (it uses PREFIX).

local REQUEST_TTL_MS = 60000 -- longer than any client retry chain (3 x 10 s socket timeout)

local function request_key(rid)
  return PREFIX .. 'req:' .. rid
end

-- The stored answer of an earlier call with this id, or nil (first time, or no id).
local function replayed(rid)
  if rid == '' then return nil end
  local stored = redis.call('GET', request_key(rid))
  if stored then return stored end
  return nil
end

-- Keep `value` (a string) as this call's answer.
local function remember(rid, value)
  if rid ~= '' then
    redis.call('SET', request_key(rid), value, 'PX', REQUEST_TTL_MS)
  end
end

-- A reservation as stored: "status|retry_after|id:token,id:token,..." (jobs in the order
-- they were returned; `refs` as reserve() in lib/core.lua lists them).
local function reservation_record(result, refs)
  return result[1] .. '|' .. result[2] .. '|' .. table.concat(refs, ',')
end

-- The reservation a stored record describes, read afresh: the caller never saw the first
-- answer, so none of these jobs has started. Those still leased to it under the same token
-- get a fresh lease (from now: the caller's clock starts when this answer arrives); those
-- whose lease ran out meanwhile go back to the head of their lanes without an attempt
-- charged (as release.lua), since they never ran; those recovered by someone else are
-- theirs.
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
