-- lib/charge_starts.lua: charge the attempts of prefetched jobs that have started.
--!include lib/job_key.lua
--!include lib/emit_job.lua

-- A job reserved into a worker's prefetch buffer (`pf`) has not started: its attempt is
-- charged only when it does, so a buffer lost in a crash or handed back costs no attempt.
-- `refs` is a flat list of job id, token pairs (refs_at, parse_refs); one `started` event
-- lists the jobs charged ("worker|id:token,id:token,..."; one event per call, not per job:
-- it is on the hot path of every prefetched job).
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
    emit_job('started', nil, nil, (worker or '') .. '|' .. table.concat(charged, ','))
  end
end
