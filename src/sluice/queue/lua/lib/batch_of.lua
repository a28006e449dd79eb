-- lib/batch_of.lua: the jobs reserved together with `id` (a burst of one conversation,
-- answered in one turn), in lane order.
--!include lib/job_key.lua

-- The first is the batch leader: it holds the lane lock and lists the others in its
-- `members` field; the others name it in their `batch` field.
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
