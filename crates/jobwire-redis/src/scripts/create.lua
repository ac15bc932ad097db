-- Create a job unless it exists. Atomic: snapshot, first event, index, publish.
-- KEYS: 1 job hash, 2 event stream, 3 job index (zset)
-- ARGV: 1 snapshot JSON, 2 create fingerprint, 3 created event JSON, 4 channel, 5 job id,
--       6 project channel ('' if none), 7 publish command (PUBLISH or SPUBLISH),
--       8 the tenant's every-project channel
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {0, redis.call('HGET', KEYS[1], 'snap'), redis.call('HGET', KEYS[1], 'create')}
end
redis.call('HSET', KEYS[1], 'seq', 1, 'snap', ARGV[1], 'create', ARGV[2])
redis.call('XADD', KEYS[2], '1-0', 'k', 'o', 'e', ARGV[3])
redis.call('ZADD', KEYS[3], 0, ARGV[5])
redis.call(ARGV[7], ARGV[4], '1 o ' .. ARGV[3])
local tagged = '1 o ' .. ARGV[5] .. ' ' .. ARGV[3]
if ARGV[6] ~= '' then redis.call(ARGV[7], ARGV[6], tagged) end
redis.call(ARGV[7], ARGV[8], tagged)
return {1}
