-- lib/requeue_solo.lua: requeue_turn, and each job marked `solo`: from now on each is
-- reserved alone (take_batch), until it completes or is dead-lettered.
--!include lib/requeue_turn.lua

-- One line that makes its handler fail every time would otherwise drag the innocent lines
-- of its burst through every retry and into the dead letters with it; retried alone, the
-- innocent lines are answered and the poison uses up only its own attempts. (A hand-back at
-- shutdown is no failure: release.lua does not mark.)
local function requeue_solo(ids, key, now, fields)
  local marked = {'solo', '1'}
  for _, v in ipairs(fields) do
    marked[#marked + 1] = v
  end
  requeue_turn(ids, key, now, marked)
end
