-- lib/emit.lua: log a transition to the queue's event stream.
--!include lib/keys.lua

local EVENTS_MAXLEN = 10000 -- approximate cap of the event stream

local function emit(kind, id, key, info)
  if info then
    redis.call('XADD', K_EVENTS, 'MAXLEN', '~', EVENTS_MAXLEN, '*',
      'type', kind, 'job', id or '', 'key', key or '', 'info', info)
  else
    redis.call('XADD', K_EVENTS, 'MAXLEN', '~', EVENTS_MAXLEN, '*',
      'type', kind, 'job', id or '', 'key', key or '')
  end
end
