-- extend: ARGV now, id, token, lease_ms. Returns 1 if the lease was extended,
-- 0 if the token is stale (fencing: a lost lease is never revived). A lease
-- being extended has a running handler, so it counts as started.
local now = clock(ARGV[1])
local id = ARGV[2]
local m = load(id)
if not m or m.state ~= 'active' or m.token ~= ARGV[3] then
  return 0
end
redis.call('SREM', K_UNSTARTED, id)
redis.call('ZADD', K_LEASE, 'XX', now + tonumber(ARGV[4]), id)
return 1
