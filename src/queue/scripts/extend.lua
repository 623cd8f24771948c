-- extend: ARGV now, id, token, lease_ms. Returns 1 if the lease was extended,
-- 0 if the token is stale (fencing: a lost lease is never revived).
local m = load(ARGV[2])
if not m or m.state ~= 'active' or m.token ~= ARGV[3] then
  return 0
end
redis.call('ZADD', K_LEASE, 'XX', tonumber(ARGV[1]) + tonumber(ARGV[4]), ARGV[2])
return 1
