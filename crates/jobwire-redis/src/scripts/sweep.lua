-- Delete finished jobs whose TTL passed (at most 100 per call).
-- KEYS: 1 expiry zset, 2 job index; ARGV: 1 now ms, 2 key prefix
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 100)
for _, id in ipairs(ids) do
  local base = ARGV[2] .. '{' .. id .. '}:'
  redis.call('DEL', base .. 'job', base .. 'events', base .. 'idem')
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
end
return #ids
