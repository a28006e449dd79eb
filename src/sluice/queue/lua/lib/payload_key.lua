-- lib/payload_key.lua: the key of a job's payload.
--!include lib/keys.lua

-- The payload lives beside the job hash so that the hash keeps only small values and
-- stays in Redis's compact listpack encoding (a payload over 64 bytes would turn the
-- whole hash into a hashtable, about 800 bytes more per job).
local function payload_key(id)
  return PREFIX .. 'payload:' .. id
end
