-- enqueue: ARGV now, count, unique_ttl_ms, wake_cap, then per task 10 fields:
-- id, data, priority (0..2), max_retries, timeout_ms, unique key ('' = none),
-- run_at ms (0 = now), delay_ms (run no earlier than now + this), kind,
-- traceparent ('' = none; kept in the record, not the data, so it never makes a
-- repeated request look different to the unique-key check).
-- Returns per task '' (stored) or the id of the task holding its unique key
-- (rejected duplicate), prefixed with '!' when that task was enqueued with
-- other data or another priority (checked here, atomically: the holder's data
-- is dropped when it completes, which also frees the key). The id is the
-- caller's: a task already stored under it (an earlier try of this call whose
-- reply was lost) is not stored again. After the n answers come 5 integers,
-- the queue as this call leaves it: ready tasks per priority (critical,
-- default, low), leased tasks, tasks completed so far.
local now = clock(ARGV[1])
local n = tonumber(ARGV[2])
local uttl = tonumber(ARGV[3])
local wake_cap = tonumber(ARGV[4])
local out = {}
local ready = 0
for i = 0, n - 1 do
  local b = 5 + i * 10
  local id = ARGV[b]
  local prio = tonumber(ARGV[b + 2])
  local unique = ARGV[b + 5]
  local run_at = tonumber(ARGV[b + 6])
  local delay = tonumber(ARGV[b + 7])
  if delay > 0 and now + delay > run_at then
    run_at = now + delay
  end
  local dup = nil
  local stored = redis.call('HEXISTS', K_META, id) == 1
  if stored then
    dup = ''
  elseif unique ~= '' then
    local holder = redis.call('HGET', K_UNIQ, unique)
    if holder then
      local exp = tonumber(redis.call('ZSCORE', K_UNIQEXP, unique) or '0')
      local hm = load(holder)
      -- A lock whose TTL lapsed or whose holder finished (or vanished) is free:
      -- it can never block re-enqueueing forever.
      if exp > now and hm and hm.state ~= 'completed' and hm.state ~= 'dead' then
        if hm.priority == prio and redis.call('HGET', K_DATA, holder) == ARGV[b + 1] then
          dup = holder
        else
          dup = '!' .. holder
        end
      end
    end
  end
  if dup then
    out[i + 1] = dup
  else
    local m = {
      kind = ARGV[b + 8],
      priority = prio,
      attempt = 0,
      max_retries = tonumber(ARGV[b + 3]),
      timeout = tonumber(ARGV[b + 4]),
      created = now,
      updated = now,
    }
    if ARGV[b + 9] ~= '' then
      m.tp = ARGV[b + 9]
    end
    if unique ~= '' then
      m.unique = unique
      local start = run_at
      if start < now then
        start = now
      end
      redis.call('HSET', K_UNIQ, unique, id)
      redis.call('ZADD', K_UNIQEXP, start + uttl, unique)
    end
    redis.call('HSET', K_DATA, id, ARGV[b + 1])
    if run_at > now then
      m.state = 'scheduled'
      m.run_at = run_at
      redis.call('ZADD', K_SCHED, run_at, id)
    else
      m.state = 'pending'
      redis.call('RPUSH', K_LISTS[prio + 1], id)
      ready = ready + 1
    end
    -- A new record has no overlays to fold in (`save` would delete them):
    -- every script that deletes a record deletes its overlays with it. (A
    -- record removed from `meta` by hand leaves them; remove them too.)
    redis.call('HSET', K_META, id, pack_meta(m))
    out[i + 1] = ''
  end
end
if ready > 0 then
  -- One token per ready task wakes that many idle workers; the list is
  -- trimmed so it stays small when nobody is blocked on it.
  local k = math.min(ready, wake_cap)
  local tokens = {}
  for j = 1, k do
    tokens[j] = '1'
  end
  redis.call('LPUSH', K_WAKE, unpack(tokens))
  redis.call('LTRIM', K_WAKE, 0, wake_cap - 1)
end
out[n + 1] = redis.call('LLEN', K_LISTS[1])
out[n + 2] = redis.call('LLEN', K_LISTS[2])
out[n + 3] = redis.call('LLEN', K_LISTS[3])
out[n + 4] = redis.call('ZCARD', K_LEASE)
out[n + 5] = tonumber(redis.call('HGET', K_COUNTERS, 'completed') or '0')
return out
