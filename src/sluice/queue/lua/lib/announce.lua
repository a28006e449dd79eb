-- lib/announce.lua: tell every worker of the queue (their control subscription) that
-- `what` happened, so they act on their prefetch buffers at once.
--!include lib/keys.lua

local function announce(what)
  redis.call('PUBLISH', K_CONTROL, what)
end
