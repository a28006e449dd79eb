-- release.lua: a conversation ended (resolved): drop its assignment and free the capacity
-- it held on its broker (lib/drop_assignment.lua, which also unindexes it).
--
-- KEYS: 1-4 assignments, loads, seen, adopt: see lib/keys.lua
-- ARGV: 1 conversation key
-- Returns the broker the conversation was assigned to, or '' when it had none (releasing
-- twice is harmless: the load is decremented once).
-- Events: none.
--!include lib/drop_assignment.lua

return drop_assignment(ARGV[1]) or ''
