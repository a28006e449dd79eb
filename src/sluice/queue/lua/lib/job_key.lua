-- lib/job_key.lua: the key of a job's hash (its fields and hop timeline, not its payload).
--!include lib/keys.lua

local function job_key(id)
  return PREFIX .. 'job:' .. id
end
