-- requeue: ARGV now, id, token. Puts a leased task back at the HEAD of its
-- priority without counting the attempt (graceful shutdown). Returns 1, or 0
-- if the token is stale.
local now = tonumber(ARGV[1])
local id = ARGV[2]
local m = load(id)
if not m or m.state ~= 'active' or m.token ~= ARGV[3] then
  return 0
end
redis.call('ZREM', K_LEASE, id)
m.state = 'pending'
m.token = nil
m.attempt = m.attempt - 1
m.updated = now
save(id, m)
redis.call('LPUSH', K_LISTS[m.priority + 1], id)
redis.call('LPUSH', K_WAKE, '1')
return 1
