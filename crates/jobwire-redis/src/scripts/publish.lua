-- Append events to a job if nobody else did since we read it (compare-and-set on seq).
-- The state machine ran in Rust against the snapshot at seq ARGV[1]; this makes the
-- write atomic: stream entries, idempotency keys, snapshot, expiry, the creator's
-- notification (when the job just finished), then PUBLISH.
-- KEYS: 1 job hash, 2 event stream, 3 idempotency hash, 4 expiry zset,
--       5 owner notification hash, 6 owner notification stream
-- ARGV: 1 expected seq, 2 new seq, 3 new snapshot JSON, 4 channel, 5 max events kept,
--       6 expire-at ms ('' if not terminal), 7 job id, 8 event count,
--       9 project channel ('' if none), 10 owner channel, 11 notifications kept,
--       12 publish command (PUBLISH, or SPUBLISH for sharded pub/sub),
--       13 the tenant's every-project channel,
--       then per event: seq, kind, event JSON, event_id ('' if none)
-- Returns 1 on success, 0 on a seq conflict (caller re-reads and retries), -1 if gone.
local cur = redis.call('HGET', KEYS[1], 'seq')
if not cur then return -1 end
if cur ~= ARGV[1] then return 0 end
local n = tonumber(ARGV[8])
local first = 14
local publish = ARGV[12]
for i = 0, n - 1 do
  local b = first + i * 4
  local seq, kind, json, eid = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
  redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[5], seq .. '-0', 'k', kind, 'e', json)
  if eid ~= '' then redis.call('HSET', KEYS[3], eid, seq) end
end
redis.call('HSET', KEYS[1], 'seq', ARGV[2], 'snap', ARGV[3])
local note = nil
if ARGV[6] ~= '' then
  redis.call('ZADD', KEYS[4], ARGV[6], ARGV[7])
  -- The job just finished (a terminal job takes no events): notify its creator.
  local last = first + (n - 1) * 4
  local ns = redis.call('HINCRBY', KEYS[5], 'seq', 1)
  note = string.format('%d', ns)
  local frame = '{"type":"notification","seq":' .. note .. ',"event":' .. ARGV[last + 2] .. '}'
  redis.call('XADD', KEYS[6], 'MAXLEN', ARGV[11], note .. '-0', 'k', 't', 'e', frame)
  note = note .. ' t ' .. frame
end
for i = 0, n - 1 do
  local b = first + i * 4
  redis.call(publish, ARGV[4], ARGV[b] .. ' ' .. ARGV[b + 1] .. ' ' .. ARGV[b + 2])
  local tagged = ARGV[b] .. ' ' .. ARGV[b + 1] .. ' ' .. ARGV[7] .. ' ' .. ARGV[b + 2]
  if ARGV[9] ~= '' then redis.call(publish, ARGV[9], tagged) end
  redis.call(publish, ARGV[13], tagged)
end
if note then redis.call(publish, ARGV[10], note) end
return 1
