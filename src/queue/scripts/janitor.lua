-- janitor: ARGV now, guard_ms, dead_retention_ms, dead_max, limit. Removes
-- completed tasks past retention, dead tasks past retention or beyond the
-- cap, and lapsed unique locks. Returns {completed, dead, locks} removed, or
-- -1 if another janitor ran within guard_ms.
local now = tonumber(ARGV[1])
if not take_guard('janitor', now, tonumber(ARGV[2])) then
  return -1
end
local dead_age = tonumber(ARGV[3])
local dead_max = tonumber(ARGV[4])
local limit = tonumber(ARGV[5])

local done = redis.call('ZRANGEBYSCORE', K_DONE, '-inf', now, 'LIMIT', 0, limit)
if #done > 0 then
  redis.call('ZREM', K_DONE, unpack(done))
  delete_tasks(done)
end

local dead = redis.call('ZRANGEBYSCORE', K_DEAD, '-inf', now - dead_age, 'LIMIT', 0, limit)
if #dead > 0 then
  redis.call('ZREM', K_DEAD, unpack(dead))
  delete_tasks(dead)
end
local dead_removed = #dead
local excess = redis.call('ZCARD', K_DEAD) - dead_max
if excess > 0 then
  local oldest = redis.call('ZRANGE', K_DEAD, 0, math.min(excess, limit) - 1)
  redis.call('ZREM', K_DEAD, unpack(oldest))
  delete_tasks(oldest)
  dead_removed = dead_removed + #oldest
end

local locks = redis.call('ZRANGEBYSCORE', K_UNIQEXP, '-inf', now, 'LIMIT', 0, limit)
if #locks > 0 then
  redis.call('ZREM', K_UNIQEXP, unpack(locks))
  redis.call('HDEL', K_UNIQ, unpack(locks))
end
return { #done, dead_removed, #locks }
