-- stats: no ARGV. Returns {llen critical, default, low, scheduled, retry,
-- active, completed, dead, paused names, counters (flat field/value list)}.
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
}
