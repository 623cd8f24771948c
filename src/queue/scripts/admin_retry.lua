-- admin_retry: ARGV now, id, unique_ttl_ms, wake_cap, call token. A dead task goes back to
-- the tail of its priority as pending, attempts reset (it gets max_retries
-- again), history kept, its unique key taken again. Returns {1, 'pending'},
-- {0, ''} when there is no such task, {-1, state} when it is not dead (or has
-- no payload left to run), {-2, state} when another task holds its unique key.
-- A repeat of the call (same token, after a lost reply) answers as the first.
local now = clock(ARGV[1])
local id = ARGV[2]
local token = ARGV[5]
local m = load(id)
if not m then
  return { 0, '' }
end
if m.fin == token and m.fin_op == 'R' then
  return { 1, 'pending' }
end
if m.state ~= 'dead' or redis.call('HEXISTS', K_DATA, id) == 0 then
  return { -1, m.state }
end
if m.unique then
  local holder = redis.call('HGET', K_UNIQ, m.unique)
  if holder and holder ~= id then
    return { -2, m.state }
  end
end
-- The dead set's byte count must lose what this task added to it.
local bytes = redis.call('HSTRLEN', K_META, id) + redis.call('HSTRLEN', K_DATA, id)
redis.call('ZREM', K_DEAD, id)
redis.call('HINCRBY', K_COUNTERS, 'dead_bytes', -bytes)
m.state = 'pending'
m.attempt = 0
m.token = nil
m.fin = token
m.fin_op = 'R'
m.fin_at = nil
m.finished = nil
m.run_at = nil
m.updated = now
if m.unique then
  redis.call('HSET', K_UNIQ, m.unique, id)
  redis.call('ZADD', K_UNIQEXP, now + tonumber(ARGV[3]), m.unique)
end
save(id, m)
redis.call('RPUSH', K_LISTS[m.priority + 1], id)
redis.call('LPUSH', K_WAKE, '1')
redis.call('LTRIM', K_WAKE, 0, tonumber(ARGV[4]) - 1)
return { 1, 'pending' }
