-- Append events to a job if nobody else did since we read it (compare-and-set on seq).
-- The state machine ran in Rust against the snapshot at seq ARGV[1]; this makes the
-- write atomic: stream entries, idempotency keys, snapshot, expiry, then PUBLISH.
-- KEYS: 1 job hash, 2 event stream, 3 idempotency hash, 4 expiry zset
-- ARGV: 1 expected seq, 2 new seq, 3 new snapshot JSON, 4 channel, 5 max events kept,
--       6 expire-at ms ('' if not terminal), 7 job id, 8 event count,
--       then per event: seq, kind, event JSON, event_id ('' if none)
-- Returns 1 on success, 0 on a seq conflict (caller re-reads and retries), -1 if gone.
local cur = redis.call('HGET', KEYS[1], 'seq')
if not cur then return -1 end
if cur ~= ARGV[1] then return 0 end
local n = tonumber(ARGV[8])
for i = 0, n - 1 do
  local b = 9 + i * 4
  local seq, kind, json, eid = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
  redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[5], seq .. '-0', 'k', kind, 'e', json)
  if eid ~= '' then redis.call('HSET', KEYS[3], eid, seq) end
end
redis.call('HSET', KEYS[1], 'seq', ARGV[2], 'snap', ARGV[3])
if ARGV[6] ~= '' then redis.call('ZADD', KEYS[4], ARGV[6], ARGV[7]) end
for i = 0, n - 1 do
  local b = 9 + i * 4
  redis.call('PUBLISH', ARGV[4], ARGV[b] .. ' ' .. ARGV[b + 1] .. ' ' .. ARGV[b + 2])
end
return 1
