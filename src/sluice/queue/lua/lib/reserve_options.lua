-- lib/reserve_options.lua: how a worker reserves, as its calls pass it.
--
-- The worker id, and one string "lease ms|default rate limit|rate guard ms|max leases to
-- recover|monitoring|batch": the default rate limit is in jobs/s, 0 = unlimited (the live
-- value in meta.rate_limit wins); the rate guard is added to the 1 s window to absorb
-- dispatch jitter; monitoring 0/1 (dead letters from expired leases are counted); batch is
-- the most jobs of one conversation to reserve together (a job marked solo is always
-- reserved alone). One argument instead of six: the client encodes every argument of every
-- call, and these rarely change.

local function reserve_options(worker, packed)
  local lease, rate, guard, recover, monitor, batch = string.match(packed,
    '^(%d+)|(%d+)|(%d+)|(%d+)|(%d)|(%d+)$')
  if not lease then
    error('reservation options must be "lease|rate|guard|recover|monitor|batch", got ' .. packed)
  end
  return {lease_ms = tonumber(lease), worker = worker, default_rate = tonumber(rate),
    guard_ms = tonumber(guard), recover = tonumber(recover), monitor = monitor == '1',
    batch = tonumber(batch)}
end
