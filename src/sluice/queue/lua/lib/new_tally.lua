-- lib/new_tally.lua: the monitoring increments of one script call.
--
-- A script that observes anything makes one tally, passes it to every helper that observes
-- (nil when monitoring is off: they observe nothing), and writes it once at its end
-- (flush_monitor), so a call costs one HINCRBY per field it touched, however many jobs it
-- handled. `fine` holds increments of the call's 10-second bucket, `total` of mon:total
-- (lib/monitor.lua).

local function new_tally()
  return {fine = {}, total = {}}
end
