-- layout.lua: the partition layout of a partitioned queue (docs/partitions.md).
--
-- The layout hash (`sluice:{name}:layout`, on partition 0's slot) holds `partitions` (N),
-- `previous` (the N before a resize still in progress, 0 when none), `epoch` (raised by
-- every change), `highest` (the most partitions the queue ever had: admin reads and
-- workers cover them all) and `tag:<p>`, the hash tag of partition p >= 1, recorded when
-- the partition is created and never changed (the caller chose it so that partitions land
-- on different masters; a partition without one, from a layout written before tags were
-- recorded, has the plain tag `name#p`). Every partition's meta holds the epoch it last
-- heard of: a producer's enqueue carries the epoch of the layout it routed by, and is
-- refused when that is not the partition's (enqueue.lua), so nothing is routed by a stale
-- layout.
--
-- KEYS: 1 the layout key (init, resize, finish) or a partition's meta key (mirror).
-- ARGV: 1 op: 'init' (2 N, 3 previous, 4 first, 5.. tags: record the layout unless one
--       is), 'resize' (2 the new N, 3 first, 4.. tags: refused while a resize is in
--       progress), 'finish' (2 the epoch the caller checked: end the resize in progress),
--       'mirror' (2 an epoch: set the partition's epoch unless it already has a later one).
--       The tags are those chosen for partitions first, first + 1, ...; only the ones of
--       partitions this call creates (from the `highest` before it to the one after) are
--       recorded, so a caller that read an older layout cannot retag a partition.
-- Returns the layout {'ok', partitions, previous, epoch, highest, tag of partition 1, ...,
-- tag of partition highest - 1 ('' where none is recorded)} (init, resize, finish; resize
-- answers 'busy' first while one is in progress and finish 'stale' when the epoch moved),
-- or the partition's epoch after a mirror.
-- Events: none.

local op = ARGV[1]
local function layout()
  local got = redis.call('HMGET', KEYS[1], 'partitions', 'previous', 'epoch', 'highest')
  return {tonumber(got[1]) or 0, tonumber(got[2]) or 0, tonumber(got[3]) or 0,
    tonumber(got[4]) or 0}
end

-- Record the tags of partitions [from, to) given in ARGV[at], ARGV[at + 1], ... for
-- partitions first, first + 1, ...
local function record_tags(first, at, from, to)
  for p = math.max(from, first, 1), to - 1 do
    local tag = ARGV[at + p - first]
    if tag and tag ~= '' then
      redis.call('HSETNX', KEYS[1], 'tag:' .. p, tag)
    end
  end
end

local function answer(status, l)
  local out = {status, l[1], l[2], l[3], l[4]}
  for p = 1, l[4] - 1 do
    out[#out + 1] = redis.call('HGET', KEYS[1], 'tag:' .. p) or ''
  end
  return out
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
    local highest = math.max(n, tonumber(ARGV[3]))
    redis.call('HSET', KEYS[1], 'partitions', n, 'previous', ARGV[3], 'epoch', 1,
      'highest', highest)
    record_tags(tonumber(ARGV[4]), 5, 1, highest)
  end
elseif op == 'resize' then
  local n = tonumber(ARGV[2])
  if l[2] ~= 0 then
    return answer('busy', l)
  end
  if n ~= l[1] then
    redis.call('HSET', KEYS[1], 'partitions', n, 'previous', l[1], 'epoch', l[3] + 1,
      'highest', math.max(l[4], n))
    record_tags(tonumber(ARGV[3]), 4, l[4], n)
  end
elseif op == 'finish' then
  if l[3] ~= tonumber(ARGV[2]) or l[2] == 0 then
    return answer('stale', l)
  end
  redis.call('HSET', KEYS[1], 'previous', 0, 'epoch', l[3] + 1)
else
  return redis.error_reply('unknown layout op ' .. tostring(op))
end
return answer('ok', layout())
