-- janitor: ARGV now, guard_ms, dead_retention_ms, dead_max, limit,
-- dead_max_bytes. Removes completed tasks past retention (acks also do, as
-- they go), dead tasks past retention or beyond either cap, and lapsed
-- unique locks, at most `limit` of each. Returns {completed, dead, locks}
-- removed, or -1 if another janitor ran within guard_ms.
local now = clock(ARGV[1])
if not take_guard('janitor', now, tonumber(ARGV[2])) then
  return -1
end
local dead_age = tonumber(ARGV[3])
local dead_max = tonumber(ARGV[4])
local limit = tonumber(ARGV[5])
local dead_bytes = tonumber(ARGV[6])

local done = redis.call('ZRANGEBYSCORE', K_DONE, '-inf', now, 'LIMIT', 0, limit)
if #done > 0 then
  redis.call('ZREM', K_DONE, unpack(done))
  delete_tasks(done)
end

local dead = redis.call('ZRANGEBYSCORE', K_DEAD, '-inf', now - dead_age, 'LIMIT', 0, limit)
remove_dead(dead)
local dead_removed = #dead
local excess = redis.call('ZCARD', K_DEAD) - dead_max
if excess > 0 then
  local oldest = redis.call('ZRANGE', K_DEAD, 0, math.min(excess, limit) - 1)
  remove_dead(oldest)
  dead_removed = dead_removed + #oldest
end
local before = redis.call('ZCARD', K_DEAD)
trim_dead(dead_max, dead_bytes)
dead_removed = dead_removed + before - redis.call('ZCARD', K_DEAD)

local locks = redis.call('ZRANGEBYSCORE', K_UNIQEXP, '-inf', now, 'LIMIT', 0, limit)
if #locks > 0 then
  redis.call('ZREM', K_UNIQEXP, unpack(locks))
  redis.call('HDEL', K_UNIQ, unpack(locks))
end
return { #done, dead_removed, #locks }
