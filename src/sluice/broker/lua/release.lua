-- release.lua: a conversation ended (resolved): drop its assignment and free the capacity
-- it held on its broker (lib/expire.lua's drop_assignment, which also unindexes it).
--
-- KEYS: 1-4 assignments, loads, seen, adopt: see lib/expire.lua
-- ARGV: 1 conversation key
-- Returns the broker the conversation was assigned to, or '' when it had none (releasing
-- twice is harmless: the load is decremented once).
--!include lib/expire.lua
return drop_assignment(ARGV[1]) or ''
