-- complete.lua: acknowledge finished jobs, then reserve the next ones for the freed slots.
--
-- Like BullMQ's moveToFinished fetching the next job, finishing and taking work share one
-- round trip: under load a worker makes one call per batch of finished jobs, not two per job.
--
-- KEYS: the queue key vector (lib/core.lua).
-- ARGV: 1 prefix, 2 completed-job retention (ms, 0 = delete at once), 3 N to reserve
--       (0 = none), 4 lease (ms), 5 worker id, 6 default rate limit, 7 rate guard (ms),
--       8 max leases to recover, 9 count of completions, then per completion:
--       job id, reservation token, m, then m x (hop name, epoch ms) marked by the handler
-- Returns {lost job ids, reserve result} where lost jobs were not completed because their
-- reservation had expired (another worker owns them now).
--!include lib/core.lua

local now = now_ms()
local retention = tonumber(ARGV[2])
local n = tonumber(ARGV[9])
local at = 10
local lost = {}
local done = 0
for _ = 1, n do
  local id, token, nmarks = ARGV[at], ARGV[at + 1], tonumber(ARGV[at + 2])
  if complete(id, token, at + 3, nmarks, retention, now) then
    done = done + 1
  else
    lost[#lost + 1] = id
  end
  at = at + 3 + 2 * nmarks
end
count('completed', done, now)
if done > 0 and retention > 0 then
  redis.call('ZREMRANGEBYSCORE', K_COMPLETED, '-inf', now - retention)
end

local want = tonumber(ARGV[3])
local taken
if want > 0 then
  recover_expired(now, tonumber(ARGV[8]))
  taken = reserve(want, tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7]), now)
else
  taken = {'ok', 0}
end
return {lost, taken}
