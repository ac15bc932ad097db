-- The snapshot and events from a seq on, read at one point in time.
-- KEYS: 1 job hash, 2 event stream; ARGV: 1 first seq, 2 max events
local snap = redis.call('HGET', KEYS[1], 'snap')
if not snap then return false end
local entries = {}
if tonumber(ARGV[2]) > 0 then
  entries = redis.call('XRANGE', KEYS[2], ARGV[1] .. '-0', '+', 'COUNT', ARGV[2])
end
return {snap, entries}
