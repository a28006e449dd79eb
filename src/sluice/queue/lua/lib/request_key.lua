-- lib/request_key.lua: where a script call keeps its answer, so that a call that reaches
-- Redis twice acts once.
--
-- redis-py re-sends a command whose reply was lost (a timeout, a cut connection), and a
-- worker re-sends an exchange it never got an answer for. Each state-changing call
-- carries a request id (a random string chosen by the caller, '' = none); the script keeps
-- what it answered under PREFIX .. 'req:' .. id (remember), and a repeated call with the
-- same id gets that answer back instead of acting again (replayed).
--!include lib/keys.lua

local REQUEST_TTL_MS = 60000 -- longer than any client retry chain (3 x 10 s socket timeout)

local function request_key(rid)
  return PREFIX .. 'req:' .. rid
end
