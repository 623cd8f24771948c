-- requeue: ARGV now, id, token. Puts a leased task back at the HEAD of its
-- priority without counting the attempt (graceful shutdown). Returns 1 (also
-- for a repeat of a requeue of this lease, which must not push it twice), or
-- 0 if the token is stale.
local now = clock(ARGV[1])
local id = ARGV[2]
local token = ARGV[3]
local m = load(id)
if not m or m.state ~= 'active' or m.token ~= token then
  if m and m.fin == token and m.fin_op == 'r' then
    return 1
  end
  return 0
end
redis.call('ZREM', K_LEASE, id)
redis.call('SREM', K_UNSTARTED, id)
m.state = 'pending'
m.token = nil
m.fin = token
m.fin_op = 'r'
m.attempt = m.attempt - 1
m.updated = now
save(id, m)
redis.call('LPUSH', K_LISTS[m.priority + 1], id)
redis.call('LPUSH', K_WAKE, '1')
return 1
