-- layout.lua: the partition layout of a partitioned queue (docs/partitions.md).
--
-- The layout hash (`sluice:{name}:layout`, on partition 0's slot) holds `partitions` (N),
-- `previous` (the N before a resize still in progress, 0 when none), `epoch` (raised by
-- every change) and `highest` (the most partitions the queue ever had: admin reads and
-- workers cover them all). Every partition's meta holds the epoch it last heard of: a
-- producer's enqueue carries the epoch of the layout it routed by, and is refused when
-- that is not the partition's (enqueue.lua), so nothing is routed by a stale layout.
--
-- KEYS: 1 the layout key (init, resize, finish) or a partition's meta key (mirror).
-- ARGV: 1 op: 'init' (2 N, 3 previous: record the layout unless one is), 'resize'
--       (2 the new N: refused while a resize is in progress), 'finish' (2 the epoch the
--       caller checked: end the resize in progress), 'mirror' (2 an epoch: set the
--       partition's epoch unless it already has a later one)
-- Returns the layout {partitions, previous, epoch, highest} (init, resize, finish; resize
-- answers {'busy', ...} while one is in progress and finish {'stale', ...} when the epoch
-- moved), or the partition's epoch after a mirror.
-- Events: none.

local op = ARGV[1]
local function layout()
  local got = redis.call('HMGET', KEYS[1], 'partitions', 'previous', 'epoch', 'highest')
  return {tonumber(got[1]) or 0, tonumber(got[2]) or 0, tonumber(got[3]) or 0,
    tonumber(got[4]) or 0}
end

if op == 'mirror' then
  local current = tonumber(redis.call('HGET', KEYS[1], 'epoch') or '0')
  local wanted = tonumber(ARGV[2])
  if wanted > current then
    redis.call('HSET', KEYS[1], 'epoch', wanted)
    return wanted
  end
  return current
end

local l = layout()
if op == 'init' then
  if l[3] == 0 then
    local n = tonumber(ARGV[2])
    redis.call('HSET', KEYS[1], 'partitions', n, 'previous', ARGV[3], 'epoch', 1,
      'highest', math.max(n, tonumber(ARGV[3])))
  end
elseif op == 'resize' then
  local n = tonumber(ARGV[2])
  if l[2] ~= 0 then
    return {'busy', l[1], l[2], l[3], l[4]}
  end
  if n ~= l[1] then
    redis.call('HSET', KEYS[1], 'partitions', n, 'previous', l[1], 'epoch', l[3] + 1,
      'highest', math.max(l[4], n))
  end
elseif op == 'finish' then
  if l[3] ~= tonumber(ARGV[2]) or l[2] == 0 then
    return {'stale', l[1], l[2], l[3], l[4]}
  end
  redis.call('HSET', KEYS[1], 'previous', 0, 'epoch', l[3] + 1)
else
  return redis.error_reply('unknown layout op ' .. tostring(op))
end
l = layout()
return {'ok', l[1], l[2], l[3], l[4]}
