-- stats: ARGV now ('' = Redis TIME). Returns {llen critical, default, low, scheduled, retry,
-- active, completed, dead, paused names, counters (flat field/value list),
-- age in ms of the oldest pending task (0 when none)}.
-- Lists are FIFO (RPUSH, LPOP), so each head is its priority's oldest: three
-- LINDEX and record reads, whatever the depth.
local now = clock(ARGV[1])
local oldest = now
for p = 1, 3 do
  local id = redis.call('LINDEX', K_LISTS[p], 0)
  if id then
    local m = load(id)
    if m and m.created and m.created < oldest then
      oldest = m.created
    end
  end
end
return {
  redis.call('LLEN', K_LISTS[1]),
  redis.call('LLEN', K_LISTS[2]),
  redis.call('LLEN', K_LISTS[3]),
  redis.call('ZCARD', K_SCHED),
  redis.call('ZCARD', K_RETRY),
  redis.call('ZCARD', K_LEASE),
  redis.call('ZCARD', K_DONE),
  redis.call('ZCARD', K_DEAD),
  redis.call('SMEMBERS', K_PAUSED),
  redis.call('HGETALL', K_COUNTERS),
  now - oldest,
}
